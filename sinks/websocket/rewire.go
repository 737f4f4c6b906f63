package websocket

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/pearld/pearld/engine"
)

var _ engine.Rewirer = (*Hub)(nil)

// useUpstream takes the latest-state cache, the event log (a Replayer)
// and the subscribable data types from the components upstream of the
// hub.
func (h *Hub) useUpstream(env *engine.Env) {
	h.typesMu.Lock()
	defer h.typesMu.Unlock()
	h.state, h.replayer = nil, nil
	for _, u := range env.Upstream() {
		if r, ok := u.(engine.StateReader); ok && h.state == nil {
			h.state = r
		}
		if r, ok := u.(engine.Replayer); ok && h.replayer == nil {
			h.replayer = r
		}
		h.addUpstreamTypes(u)
	}
}

// upstreamEpoch returns the epoch of the Seq values the hub is written:
// that of the upstream sources that keep their own Seq (engine.Sequencer,
// such as redis_stream, whose Seq values are the same on every instance),
// else the engine's. Sources of two sequence spaces cannot feed one hub:
// clients could not resume.
func upstreamEpoch(env *engine.Env) (int64, error) {
	var (
		epoch       int64
		sequenced   bool
		unsequenced string
	)
	for _, u := range env.Upstream() {
		if s, ok := u.(engine.Sequencer); ok {
			if sequenced && s.SeqEpoch() != epoch {
				return 0, errors.New("inputs: the hub reads sources of different sequence epochs (two redis_stream streams?); clients could not resume")
			}
			epoch, sequenced = s.SeqEpoch(), true
			continue
		}
		if _, ok := u.(engine.Source); ok && unsequenced == "" {
			unsequenced = fmt.Sprintf("%T", u)
		}
	}
	switch {
	case !sequenced:
		return env.Epoch, nil
	case unsequenced != "":
		return 0, fmt.Errorf("inputs: the hub reads a source whose events carry their own seq (redis_stream) and one whose do not (%s); clients could not resume: send the latter's events through the stream", unsequenced)
	}
	return epoch, nil
}

// stateReader returns the upstream latest-state cache, or nil.
func (h *Hub) stateReader() engine.StateReader {
	h.typesMu.RLock()
	defer h.typesMu.RUnlock()
	return h.state
}

// Rewire follows a reload that replaced components upstream of the hub
// while the hub itself is unchanged: connected clients stay, and
// subscriptions, history and resume go on; the latest-state cache, the
// event log and the data types upstream sources declare are looked up
// again. Data types the hub already served stay subscribable. A reload
// that changes the sequence epoch upstream (a redis_stream source added,
// removed or pointed at another stream) cannot keep the hub's clients,
// whose seq values would mean nothing: it fails, and asks for a restart.
func (h *Hub) Rewire(env *engine.Env) error {
	epoch, err := upstreamEpoch(env)
	if err != nil {
		return err
	}
	if epoch != h.epoch {
		return fmt.Errorf("inputs: the sequence epoch of the hub's sources changes (%d to %d); restart pearld to apply this change", h.epoch, epoch)
	}
	h.useUpstream(env)
	return nil
}

// replayTimeout bounds a request to the upstream event log.
const replayTimeout = 5 * time.Second

// replay is what the upstream event log returned for a resume.
type replay struct {
	since  uint64
	events []engine.Event
	ok     bool
}

// replayFor asks the upstream event log for the events of k after r.since
// when the hub's own history does not hold r.since: the hub started after
// it, dropped it, or has not received it yet (another instance is ahead).
// It returns nil when there is nothing to ask (no resume, no event log, an
// epoch of another sequence space) or the log failed; then the hub's own
// history decides. It runs without locks: only c's reader goroutine calls
// it, before subscribe takes the topic's lock.
func (h *Hub) replayFor(k *subKey, r *resume) *replay {
	if r == nil || (r.hasEpoch && r.epoch != h.epoch) {
		return nil
	}
	h.typesMu.RLock()
	log := h.replayer
	h.typesMu.RUnlock()
	if log == nil {
		return nil
	}
	if t := h.topic(k, false); t != nil {
		t.mu.Lock()
		held := t.holds(r.since)
		t.mu.Unlock()
		if held {
			return nil
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), replayTimeout)
	defer cancel()
	// One more than History: a client that missed more than the hub
	// keeps gets the latest state instead, as from the hub's own history.
	events, ok, err := log.Replay(ctx, k.key, r.since, h.History+1)
	if err != nil {
		h.log.Warn("replaying missed events failed", "key", k.key, "since", r.since, "err", err)
		return nil
	}
	return &replay{since: r.since, events: events, ok: ok}
}

// holds reports whether the topic's history holds the event with Seq seq,
// and with it every later event of the key the hub was written. The
// caller holds t.mu.
func (t *topic) holds(seq uint64) bool {
	for _, f := range t.ring {
		if f.seq == seq {
			return true
		}
	}
	return false
}

// resume returns the frames of a resume served from the event log: the
// replayed events, then the hub's own history after them (events written
// since the replay), and the Seq up to which the client then has every
// event, which becomes its subscription's floor (later data_update frames
// at or below it are the replayed ones arriving). ok is false when they
// do not add up to every missed event. The caller holds t.mu.
func (p *replay) resume(t *topic, k *subKey, history int) (frames []*frame, floor uint64, ok bool) {
	if !p.ok || len(p.events) > history {
		return nil, 0, false
	}
	floor = p.since
	frames = make([]*frame, 0, len(p.events))
	for i := range p.events {
		e := &p.events[i]
		frames = append(frames, eventFrame(typeDataUpdate, k.key, e, false))
		floor = e.Seq
	}
	if floor < t.lastSeq() {
		more, ok := t.missed(floor)
		if !ok {
			return nil, 0, false
		}
		frames = append(frames, more...)
		floor = t.lastSeq()
	}
	return frames, floor, true
}
