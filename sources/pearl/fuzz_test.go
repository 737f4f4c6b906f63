package pearl

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/pearld/pearld/engine"
)

// FuzzDecode feeds device answers to the decoding of the Pearl API: the
// envelope, the tolerant decoders of channels, publishers, system status,
// identity and firmware, and the publisher tracker that turns two
// successive channel lists into publisher_status events. Invariants:
//
//   - nothing panics; an answer that is refused is an *Error of a known
//     kind (a 2xx answer that is refused is a bad response, a not-found or
//     a rejection); a non-2xx answer is always refused;
//   - the first poll makes one event per channel id, without changes;
//     polling the same state again makes no event and the same busy flag;
//   - every event carries valid JSON data whose channel, device, hash and
//     publishers are the event's; its changes are exactly the publishers
//     whose is_configured, started, state or description differ between
//     the two polls (or that appeared or disappeared), with the right
//     previous and current values and changed fields;
//   - a channel that disappears makes one event with no publishers (and
//     the disappearance of its publishers as changes);
//   - a system status makes a device_health event whose status is
//     degraded exactly when cpuload_high is set or cputemp reaches a
//     positive threshold.
func FuzzDecode(f *testing.F) {
	answers, _ := filepath.Glob(filepath.Join("testdata", "answers", "*.json"))
	var bodies [][]byte
	for _, a := range answers {
		b, err := os.ReadFile(a)
		if err != nil {
			f.Fatal(err)
		}
		bodies = append(bodies, b)
	}
	bodies = append(bodies,
		[]byte(`{"status":"ok","result":[{"id":"1","publishers":[{"id":"0","status":{"is_configured":true,"started":true,"state":"starting"}}]}]}`),
		[]byte(`{"status":"ok","result":[{"id":"1","publishers":[{"id":"0","status":{"is_configured":true,"started":true,"state":"started"}},{"id":"0","status":{"state":"error"}}]},{"id":"1"},{"id":""}]}`),
		[]byte(`{"status":"ok","result":[{"id":1.5e3,"publishers":[{"id":true,"status":{"is_configured":"1","started":0,"state":7,"description":"x"}}]}]}`),
		[]byte(`{"status":"ok","result":{"date":"2026-11-25 20:31:12","uptime":"12.9","cpuload":"85","cpuload_high":"true","cputemp":-5,"cputemp_threshold":0}}`),
		[]byte(`{"status":"notfound","message":"no such channel"}`),
		[]byte(`{"status":"ok","result":null}`),
		[]byte(`{"status":"ok","result":[{"id":"1","publishers":null}]`),
		[]byte(`<html><body>booting</body></html>`),
		[]byte(``),
	)
	for i, b := range bodies {
		f.Add(uint16(200), b, bodies[(i+1)%len(bodies)])
	}
	f.Add(uint16(401), []byte(`{"status":"error","message":"bad password"}`), []byte(`{}`))
	f.Add(uint16(503), []byte(`<html>booting</html>`), []byte(``))
	f.Add(uint16(302), []byte(``), []byte(``))

	f.Fuzz(func(t *testing.T, code uint16, first, second []byte) {
		status := int(code) % 600
		// Every decoder, on both answers.
		for _, body := range [][]byte{first, second} {
			var (
				st    SystemStatus
				id    Ident
				fw    Firmware
				chans []Channel
			)
			for _, out := range []any{&chans, &st, &id, &fw, nil} {
				if msg := checkDecode(status, body, out); msg != "" {
					t.Fatal(msg)
				}
			}
		}
		if status/100 != 2 {
			return
		}
		var prev, cur []Channel
		if decode("GET", "/channels", 200, nil, first, &prev) != nil {
			return
		}
		tr := newPublisherTracker("dev", "10.0.0.1")
		at := time.Date(2026, 11, 25, 20, 31, 12, 345e6, time.UTC)
		evs, busy := tr.observe(prev, at)
		if msg := checkFirstPoll(prev, evs); msg != "" {
			t.Fatal(msg)
		}
		if again, busyAgain := tr.observe(prev, at.Add(time.Second)); len(again) > 0 || busyAgain != busy {
			t.Fatalf("the same state again made %d events, busy %v then %v", len(again), busy, busyAgain)
		}
		if decode("GET", "/channels", 200, nil, second, &cur) == nil {
			before := snapshot(tr)
			evs, _ = tr.observe(cur, at.Add(2*time.Second))
			if msg := checkChanges(before, snapshot(tr), evs); msg != "" {
				t.Fatal(msg)
			}
		}
		before := snapshot(tr)
		evs, _ = tr.observe(nil, at.Add(3*time.Second))
		if msg := checkChanges(before, nil, evs); msg != "" {
			t.Fatal("removing every channel: " + msg)
		}
		for _, e := range evs {
			if !json.Valid(e.Data) || len(tr.known) != 0 {
				t.Fatalf("removal event %s", e.Data)
			}
		}

		var st SystemStatus
		if decode("GET", "/system/status", 200, nil, first, &st) == nil {
			if msg := checkHealth(st, at); msg != "" {
				t.Fatal(msg)
			}
		}
	})
}

// checkDecode decodes body, answered with status, into out.
func checkDecode(status int, body []byte, out any) string {
	err := decode("GET", "/x", status, nil, body, out)
	if err == nil {
		if status/100 != 2 {
			return fmt.Sprintf("HTTP %d accepted", status)
		}
		return ""
	}
	var e *Error
	if !errors.As(err, &e) || e.Kind == nil || e.Reason == "" || e.Message == "" {
		return fmt.Sprintf("error %T %v is not a complete *Error", err, err)
	}
	if status/100 == 2 && !slices.Contains([]error{ErrBadResponse, ErrNotFound, ErrRejected}, e.Kind) {
		return fmt.Sprintf("HTTP %d refused as %v: %v", status, e.Kind, err)
	}
	return ""
}

// snapshot copies what a tracker knows.
func snapshot(tr *publisherTracker) map[string][]PublisherEntry {
	out := make(map[string][]PublisherEntry, len(tr.known))
	for id, e := range tr.known {
		out[id] = slices.Clone(e)
	}
	return out
}

// eventData decodes and checks the envelope of a publisher_status event.
func eventData(e engine.Event) (PublisherStatusData, string) {
	var d PublisherStatusData
	if e.Type != TypePublisherStatus || e.Device != "dev" || e.Channel == "" {
		return d, fmt.Sprintf("event %+v", e)
	}
	if !json.Valid(e.Data) {
		return d, fmt.Sprintf("event data is not JSON: %q", e.Data)
	}
	if err := json.Unmarshal(e.Data, &d); err != nil {
		return d, fmt.Sprintf("event data %s: %v", e.Data, err)
	}
	if d.Channel != e.Channel || d.DeviceID != "dev" || d.DeviceIP != "10.0.0.1" || d.Publishers == nil || d.Changes == nil {
		return d, fmt.Sprintf("event data %s does not match its event", e.Data)
	}
	if h := hashPublishers(d.Publishers); h != e.Hash {
		return d, fmt.Sprintf("event data %s: its publishers hash to %x, the event says %x", e.Data, h, e.Hash)
	}
	return d, ""
}

func checkFirstPoll(chans []Channel, evs []engine.Event) string {
	want := map[string]bool{}
	for _, c := range chans {
		if c.ID != "" {
			want[c.ID] = true
		}
	}
	if len(evs) != len(want) {
		return fmt.Sprintf("first poll of %d channel ids made %d events", len(want), len(evs))
	}
	for _, e := range evs {
		d, msg := eventData(e)
		if msg != "" {
			return msg
		}
		if !want[e.Channel] || len(d.Changes) != 0 {
			return fmt.Sprintf("first poll event %s", e.Data)
		}
		delete(want, e.Channel)
	}
	return ""
}

// checkChanges checks the events of a poll that moved a tracker from
// before to after.
func checkChanges(before, after map[string][]PublisherEntry, evs []engine.Event) string {
	seen := map[string]bool{}
	for _, e := range evs {
		d, msg := eventData(e)
		if msg != "" {
			return msg
		}
		if seen[e.Channel] {
			return fmt.Sprintf("two events for channel %q", e.Channel)
		}
		seen[e.Channel] = true
		prev, wasKnown := before[e.Channel]
		if !wasKnown {
			if len(d.Changes) != 0 {
				return fmt.Sprintf("a new channel's event has changes: %s", e.Data)
			}
			continue
		}
		_, still := after[e.Channel]
		want := expectedChanges(prev, after[e.Channel])
		if len(want) == 0 && still {
			return fmt.Sprintf("event without a change: %s", e.Data)
		}
		got, _ := json.Marshal(d.Changes)
		if exp, _ := json.Marshal(want); string(got) != string(exp) {
			return fmt.Sprintf("channel %q changes\n%s\nwant\n%s", e.Channel, got, exp)
		}
		if !still && len(d.Publishers) != 0 {
			return fmt.Sprintf("removed channel %q still has publishers: %s", e.Channel, e.Data)
		}
	}
	for id, prev := range before {
		_, still := after[id]
		if !seen[id] && (!still || len(expectedChanges(prev, after[id])) > 0) {
			return fmt.Sprintf("channel %q changed or disappeared without an event", id)
		}
	}
	for id := range after {
		if _, known := before[id]; !known && !seen[id] {
			return fmt.Sprintf("new channel %q without an event", id)
		}
	}
	return ""
}

// expectedChanges is diffPublishers written plainly: changed publishers
// in cur's order, then the ones that disappeared in prev's order.
func expectedChanges(prev, cur []PublisherEntry) []PublisherChange {
	find := func(list []PublisherEntry, id string) *StatusCore {
		for i := range list {
			if list[i].ID == id {
				return &list[i].Status
			}
		}
		return nil
	}
	all := []string{"is_configured", "started", "state", "description"}
	present := func(s StatusCore) []string {
		if s.Description == "" {
			return all[:3]
		}
		return all
	}
	out := []PublisherChange{}
	for _, p := range cur {
		old := find(prev, p.ID)
		if old == nil {
			out = append(out, PublisherChange{PublisherID: p.ID, Current: ptr(p.Status), ChangedFields: present(p.Status)})
			continue
		}
		var fields []string
		for i, differs := range []bool{old.IsConfigured != p.Status.IsConfigured, old.Started != p.Status.Started,
			old.State != p.Status.State, old.Description != p.Status.Description} {
			if differs {
				fields = append(fields, all[i])
			}
		}
		if fields != nil {
			out = append(out, PublisherChange{PublisherID: p.ID, Previous: ptr(*old), Current: ptr(p.Status), ChangedFields: fields})
		}
	}
	for _, p := range prev {
		if find(cur, p.ID) == nil {
			out = append(out, PublisherChange{PublisherID: p.ID, Previous: ptr(p.Status), ChangedFields: present(p.Status)})
		}
	}
	return out
}

// checkHealth runs a system status through a health tracker.
func checkHealth(st SystemStatus, at time.Time) string {
	c, err := NewClient(&engine.Device{Name: "dev", Address: "10.0.0.1", Timeout: engine.Duration(time.Second)}, ClientOptions{})
	if err != nil {
		return err.Error()
	}
	tr := newHealthTracker(c, 10, 3)
	rebooted := tr.checkReboot(st, at)
	ev, ok := tr.succeeded(st, rebooted, at)
	if !ok {
		return "the first answer made no device_health event"
	}
	var d DeviceHealthData
	if err := json.Unmarshal(ev.Data, &d); err != nil || d.System == nil {
		return fmt.Sprintf("device_health data %s: %v", ev.Data, err)
	}
	degraded := st.CPULoadHigh || st.CPUTempThreshold > 0 && st.CPUTemp >= st.CPUTempThreshold
	if (d.Status == HealthDegraded) != degraded || !degraded && d.Status != HealthOnline {
		return fmt.Sprintf("status %q for %+v", d.Status, st)
	}
	if _, again := tr.succeeded(st, tr.checkReboot(st, at), at); again {
		return fmt.Sprintf("the same answer at the same time made a second event: %+v", st)
	}
	return ""
}
