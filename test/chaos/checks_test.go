package chaos

import (
	"encoding/json"
	"fmt"
	"hash/fnv"
	"net/http"
	"net/url"
	"runtime"
	"slices"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"github.com/pearld/pearld/engine/auth"
	"github.com/pearld/pearld/sources/pearl/pearltest"
)

// The checks of TestChaos.

func mib(b uint64) float64 { return float64(b) / (1 << 20) }

// storedEvents returns how many events the REST store holds.
func storedEvents(rest *restClient) int {
	_, body, err := rest.get("/api/realtime/stats")
	var a struct {
		Stats struct {
			Events int `json:"events_stored"`
		} `json:"stats"`
	}
	if err != nil || json.Unmarshal(body, &a) != nil {
		return -1
	}
	return a.Stats.Events
}

// settledHeap returns HeapInuse and the goroutine count after garbage
// collection (twice: sync.Pools keep objects for one cycle).
func settledHeap() (uint64, int) {
	runtime.GC()
	runtime.GC()
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return m.HeapInuse, runtime.NumGoroutine()
}

// checkAll checks the observers against each other and every client
// against the first observer.
func checkAll(observers []*wsClient, clients []*wsClient, end map[string]uint64) []string {
	h1, problems := histories(observers[0])
	h2, more := histories(observers[1])
	problems = append(problems, more...)
	for _, o := range observers {
		o.mu.Lock()
		problems = append(problems, o.problems...)
		o.mu.Unlock()
	}
	for k, a := range h1 {
		b := h2[k]
		if b == nil {
			problems = append(problems, k+": unknown to observer-2")
			continue
		}
		// Both subscribed before the chaos; compare from the later start.
		from := uint64(0)
		if len(a.seqs) > 0 && len(b.seqs) > 0 {
			from = max(a.seqs[0], b.seqs[0])
		}
		cut := func(s []uint64) []uint64 {
			i, _ := slices.BinarySearch(s, from)
			return s[i:]
		}
		if x, y := cut(a.seqs), cut(b.seqs); !slices.Equal(x[:min(len(x), len(y))], y[:min(len(x), len(y))]) {
			problems = append(problems, fmt.Sprintf("%s: the observers saw different sequences", k))
		}
	}
	for _, c := range clients {
		problems = append(problems, checkClient(c, h1, end)...)
	}
	return problems
}

// checkREST checks that the REST event API's events of every key (its
// newest, up to 100, of those the bounded store still holds) are a
// gap-free run of the observer's sequence, with the same data, reaching at
// least end.
func checkREST(rest *restClient, keys []key, observer *wsClient, end map[string]uint64) []string {
	type restEvent struct {
		Channel *string         `json:"channel"`
		Data    json.RawMessage `json:"data"`
		Seq     uint64          `json:"seq"`
	}
	var problems []string
	got := map[string][]restEvent{}
	newest := map[string]uint64{}
	for _, k := range keys {
		q := url.Values{"device": {k.device}, "type": {k.dataType}, "limit": {"100"}}
		if k.channel != "" {
			q.Set("channel", k.channel)
		}
		code, body, err := rest.get("/api/realtime/events?" + q.Encode())
		var events []restEvent
		if err == nil && code == http.StatusOK {
			err = json.Unmarshal(body, &events)
		}
		if err != nil || code != http.StatusOK {
			problems = append(problems, fmt.Sprintf("REST events of %s: %d %v %s", k.key, code, err, body))
			continue
		}
		got[k.key] = events
		if len(events) > 0 {
			newest[k.key] = events[len(events)-1].Seq
		}
	}
	// Events go on (figures of the plugin move): the REST answer may hold
	// events the observer has not read yet.
	if !waitFor(10*time.Second, func() bool { return observer.caughtUp(newest) }) {
		problems = append(problems, "the observer did not reach the REST API's newest events")
	}
	hist, _ := histories(observer)
	checked := 0
	for _, k := range keys {
		h := hist[k.key]
		var prev uint64
		for _, ev := range got[k.key] {
			if k.channel == "" && ev.Channel != nil && *ev.Channel != "" {
				continue // another key of the device
			}
			hash := fnv.New64a()
			hash.Write(ev.Data)
			switch want, known := h.hash[ev.Seq]; {
			case len(h.seqs) == 0 || ev.Seq < h.seqs[0]:
				// Before the observer subscribed.
			case !known:
				problems = append(problems, fmt.Sprintf("REST events of %s: seq %d unknown to the hub's clients", k.key, ev.Seq))
			case want != hash.Sum64():
				problems = append(problems, fmt.Sprintf("REST events of %s: seq %d has other data than the hub's", k.key, ev.Seq))
			case prev != 0 && prev >= h.seqs[0]:
				if next, _ := h.next(prev); next != ev.Seq {
					problems = append(problems, fmt.Sprintf("REST events of %s: seq %d follows %d, the hub's next was %d", k.key, ev.Seq, prev, next))
				}
			}
			prev = ev.Seq
		}
		// The store evicts the oldest events first: a key's newest event
		// goes last, so a key with any event held must have its newest.
		if len(got[k.key]) > 0 {
			checked++
			if prev < end[k.key] {
				problems = append(problems, fmt.Sprintf("REST events of %s end at seq %d, the hub's at %d", k.key, prev, end[k.key]))
			}
		}
	}
	if checked < len(keys)/4 {
		problems = append(problems, fmt.Sprintf("the REST store held events of only %d of %d keys", checked, len(keys)))
	}
	return problems
}

// publisherState is what defines a publisher's state.
type publisherState struct {
	ID           string `json:"id"`
	IsConfigured bool   `json:"is_configured"`
	Started      bool   `json:"started"`
	State        string `json:"state"`
	Description  string `json:"description"`
}

// statesOf reads the publishers of publisher_status data.
func statesOf(data []byte) ([]publisherState, error) {
	var d struct {
		Publishers []struct {
			ID     string         `json:"id"`
			Status publisherState `json:"status"`
		} `json:"publishers"`
	}
	if err := json.Unmarshal(data, &d); err != nil {
		return nil, err
	}
	out := []publisherState{}
	for _, p := range d.Publishers {
		s := p.Status
		s.ID = p.ID
		out = append(out, s)
	}
	return out, nil
}

// stateMismatches compares, for every key, the devices' real state with
// the hub's cached_data, the REST state route and, for device_health, the
// newest event of the REST event API.
func stateMismatches(t *testing.T, wsURL string, rest *restClient, devices []*pearltest.Device, keys []key) []string {
	cached, err := cachedState(t, wsURL, keys)
	if err != nil {
		return []string{err.Error()}
	}
	var out []string
	for _, k := range keys {
		var i int
		fmt.Sscanf(k.device, "d%d", &i)
		d := devices[i-1]
		switch k.dataType {
		case "publisher_status":
			real := []publisherState{}
			for _, ch := range d.Channels() {
				if ch.ID != k.channel {
					continue
				}
				for _, p := range ch.Publishers {
					s := p.Status
					real = append(real, publisherState{ID: p.ID, IsConfigured: s.IsConfigured, Started: s.Started, State: s.State, Description: s.Description})
				}
			}
			hub, err := statesOf(cached[k.key])
			if err != nil || !slices.Equal(hub, real) {
				out = append(out, fmt.Sprintf("%s: hub %+v (%v), device %+v", k.key, hub, err, real))
			}
			code, body, err := rest.get(fmt.Sprintf("/api/device-state/devices/%s/channels/%s/publishers/status", k.device, k.channel))
			api, jerr := statesOf(body)
			if err != nil || code != http.StatusOK || jerr != nil || !slices.Equal(api, real) {
				out = append(out, fmt.Sprintf("%s: REST state %d %+v (%v %v), device %+v", k.key, code, api, err, jerr, real))
			}
		case "device_health":
			sys := d.System()
			want := "online"
			if sys.CPULoadHigh || sys.CPUTempThreshold > 0 && sys.CPUTemp >= sys.CPUTempThreshold {
				want = "degraded"
			}
			var hub struct {
				Status string `json:"status"`
			}
			if json.Unmarshal(cached[k.key], &hub) != nil || hub.Status != want {
				out = append(out, fmt.Sprintf("%s: hub status %q, device %q", k.key, hub.Status, want))
			}
			code, body, err := rest.get("/api/realtime/events?type=device_health&limit=1&device=" + k.device)
			var evs []struct {
				Data struct {
					Status string `json:"status"`
				} `json:"data"`
			}
			if err != nil || code != http.StatusOK || json.Unmarshal(body, &evs) != nil || len(evs) != 1 || evs[0].Data.Status != want {
				out = append(out, fmt.Sprintf("%s: REST newest event %d %s, device %q", k.key, code, body, want))
			}
		}
	}
	return out
}

// cachedState asks the hub for the cached data of every key with
// get_cached_data on a connection of its own.
func cachedState(t *testing.T, wsURL string, keys []key) (map[string]json.RawMessage, error) {
	header := http.Header{"Authorization": {"Bearer " + mint(t, "checker", auth.Permissions{RealtimeData: true}, nil)}}
	d := websocket.Dialer{HandshakeTimeout: 10 * time.Second}
	conn, resp, err := d.Dial(wsURL, header)
	if resp != nil && resp.Body != nil {
		resp.Body.Close()
	}
	if err != nil {
		return nil, fmt.Errorf("dialing the hub: %w", err)
	}
	defer conn.Close()
	_ = conn.SetReadDeadline(time.Now().Add(10 * time.Second))
	var f frame
	if err := conn.ReadJSON(&f); err != nil || f.Type != "connected" {
		return nil, fmt.Errorf("connecting: %v %q", err, f.Type)
	}
	for _, k := range keys {
		m := map[string]any{"type": "get_cached_data", "dataType": k.dataType, "device": k.device}
		if k.channel != "" {
			m["channel"] = k.channel
		}
		if err := conn.WriteJSON(m); err != nil {
			return nil, err
		}
	}
	out := map[string]json.RawMessage{}
	for range keys {
		f = frame{}
		if err := conn.ReadJSON(&f); err != nil {
			return nil, fmt.Errorf("reading cached data: %w", err)
		}
		switch f.Type {
		case "cached_data":
			out[f.SubscriptionKey] = f.Data
		case "no_cached_data":
		default:
			return nil, fmt.Errorf("get_cached_data answered %q %s", f.Type, f.Message)
		}
	}
	return out, nil
}
