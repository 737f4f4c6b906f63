package engine

import "time"

// ComponentStatus is a component's entry in /status.
type ComponentStatus struct {
	Name      string `json:"name"`
	Kind      string `json:"kind"`
	Type      string `json:"type"`
	State     string `json:"state"`
	Received  uint64 `json:"received_events"`
	Sent      uint64 `json:"sent_events"`
	Dropped   uint64 `json:"dropped_events"`
	Errors    uint64 `json:"errors"`
	Restarts  uint64 `json:"restarts"`
	Queued    int    `json:"queued_batches"`
	LastError string `json:"last_error,omitempty"`
	ErrorAt   string `json:"last_error_at,omitempty"`
}

// Status reports each component's state and counters. Error texts, which
// may name devices and addresses, are included only when detail is true.
func (p *Pipeline) Status(detail bool) []ComponentStatus {
	out := make([]ComponentStatus, 0, len(p.nodes))
	for _, n := range p.nodes {
		n.mu.Lock()
		s := ComponentStatus{
			Name: n.cfg.Name, Kind: string(n.cfg.Kind), Type: n.cfg.Type, State: n.state,
			Received: counterValue(n.received), Sent: counterValue(n.sent), Dropped: counterValue(n.dropped),
			Errors: counterValue(n.errs), Restarts: counterValue(n.restarts),
		}
		if n.in != nil {
			s.Queued = len(n.in)
		}
		if detail && n.lastErr != "" {
			s.LastError = n.lastErr
			s.ErrorAt = n.errAt.UTC().Format(time.RFC3339)
		}
		n.mu.Unlock()
		out = append(out, s)
	}
	return out
}
