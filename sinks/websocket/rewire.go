package websocket

import "github.com/pearld/pearld/engine"

var _ engine.Rewirer = (*Hub)(nil)

// useUpstream takes the latest-state cache and the subscribable data types
// from the components upstream of the hub.
func (h *Hub) useUpstream(env *engine.Env) {
	h.typesMu.Lock()
	defer h.typesMu.Unlock()
	h.state = nil
	for _, u := range env.Upstream() {
		if r, ok := u.(engine.StateReader); ok && h.state == nil {
			h.state = r
		}
		h.addUpstreamTypes(u)
	}
}

// stateReader returns the upstream latest-state cache, or nil.
func (h *Hub) stateReader() engine.StateReader {
	h.typesMu.RLock()
	defer h.typesMu.RUnlock()
	return h.state
}

// Rewire follows a reload that replaced components upstream of the hub
// while the hub itself is unchanged: connected clients stay, and
// subscriptions, history and resume go on; the latest-state cache and the
// data types upstream sources declare are looked up again. Data types the
// hub already served stay subscribable.
func (h *Hub) Rewire(env *engine.Env) error {
	h.useUpstream(env)
	return nil
}
