package pearltest

import (
	"encoding/json"
	"errors"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"
)

func publisherStatus(t *testing.T, d *Device, cid, pid string) apiStatus {
	t.Helper()
	return getResult[apiStatus](t, d, "/api/v2.0/channels/"+cid+"/publishers/"+pid+"/status")
}

func post(t *testing.T, d *Device, path string) {
	t.Helper()
	w := do(t, d, http.MethodPost, "/api/v2.0"+path)
	if w.Code != http.StatusOK || !jsonEqual(t, w.Body.Bytes(), `{"status":"ok"}`) {
		t.Fatalf("POST %s: %d %s", path, w.Code, w.Body)
	}
}

func TestControlTransitions(t *testing.T) {
	const delay = 100 * time.Millisecond
	tests := []struct {
		name     string
		pub      Publisher
		action   string // path after /channels/7/publishers
		wantNow  apiStatus
		wantThen apiStatus // after the control delay
	}{
		{
			name:     "start rtmp",
			pub:      Publisher{ID: "0", Type: TypeRTMP, Status: PublisherStatus{IsConfigured: true}},
			action:   "/0/control/start",
			wantNow:  apiStatus{IsConfigured: true, Started: true, State: StateStarting},
			wantThen: apiStatus{IsConfigured: true, Started: true, State: StateStarted},
		},
		{
			name:     "start whole channel",
			pub:      Publisher{ID: "0", Type: TypeSRT, Status: PublisherStatus{IsConfigured: true}},
			action:   "/control/start",
			wantNow:  apiStatus{IsConfigured: true, Started: true, State: StateStarting},
			wantThen: apiStatus{IsConfigured: true, Started: true, State: StateStarted},
		},
		{
			name:     "start srt listener",
			pub:      Publisher{ID: "0", Type: TypeSRT, Mode: ModeListener, Status: PublisherStatus{IsConfigured: true}},
			action:   "/0/control/start",
			wantNow:  apiStatus{IsConfigured: true, Started: true, State: StateStarting},
			wantThen: apiStatus{IsConfigured: true, Started: true, State: StateListening},
		},
		{
			name:     "start unconfigured",
			pub:      Publisher{ID: "0", Type: TypeRTMP},
			action:   "/0/control/start",
			wantNow:  apiStatus{State: StateError, Description: "Publisher is not configured"},
			wantThen: apiStatus{State: StateError, Description: "Publisher is not configured"},
		},
		{
			name:     "stop started",
			pub:      Publisher{ID: "0", Type: TypeSRT, Status: PublisherStatus{IsConfigured: true, Started: true, State: StateStarted}},
			action:   "/0/control/stop",
			wantNow:  apiStatus{IsConfigured: true, State: StateStopped},
			wantThen: apiStatus{IsConfigured: true, State: StateStopped},
		},
		{
			name:     "stop whole channel in error",
			pub:      Publisher{ID: "0", Type: TypeRTMP, Status: PublisherStatus{IsConfigured: true, Started: true, State: StateError, Description: "x"}},
			action:   "/control/stop",
			wantNow:  apiStatus{IsConfigured: true, State: StateStopped},
			wantThen: apiStatus{IsConfigured: true, State: StateStopped},
		},
		{
			name:     "restart after error",
			pub:      Publisher{ID: "0", Type: TypeRTMP, Status: PublisherStatus{IsConfigured: true, Started: true, State: StateError, Description: "x"}},
			action:   "/0/control/start",
			wantNow:  apiStatus{IsConfigured: true, Started: true, State: StateStarting},
			wantThen: apiStatus{IsConfigured: true, Started: true, State: StateStarted},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			clock := newFakeClock()
			d := NewDevice(Options{Now: clock.Now, ControlDelay: delay,
				Channels: []Channel{{ID: "7", Name: "x", Publishers: []Publisher{tt.pub}}}})
			post(t, d, "/channels/7/publishers"+tt.action)
			check := func(when string, want apiStatus) {
				t.Helper()
				got := publisherStatus(t, d, "7", "0")
				if got.IsConfigured != want.IsConfigured || got.Started != want.Started ||
					got.State != want.State || got.Description != want.Description {
					t.Fatalf("%s: status = %+v, want %+v", when, got, want)
				}
				running := got.Started && got.State != StateStarting
				if (got.Since != nil) != running || (got.Duration != nil) != running || (got.Reconnections != nil) != running {
					t.Fatalf("%s: since/duration/reconnections present in %+v, want %v", when, got, running)
				}
			}
			check("at once", tt.wantNow)
			clock.Add(delay - time.Millisecond)
			check("just before the delay", tt.wantNow)
			clock.Add(time.Millisecond)
			check("after the delay", tt.wantThen)
		})
	}
}

func TestControlRealDelay(t *testing.T) {
	d := NewDevice(Options{ControlDelay: 50 * time.Millisecond})
	post(t, d, "/channels/1/publishers/control/start")
	for _, pid := range []string{"0", "1"} {
		if st := publisherStatus(t, d, "1", pid); st.State != StateStarting {
			t.Fatalf("publisher %s state = %q right after start, want starting", pid, st.State)
		}
	}
	if st := publisherStatus(t, d, "2", "0"); st.State != StateStopped {
		t.Fatalf("other channel's publisher state = %q, want stopped", st.State)
	}
	deadline := time.Now().Add(5 * time.Second)
	for publisherStatus(t, d, "1", "1").State != StateStarted {
		if time.Now().After(deadline) {
			t.Fatal("publisher never started")
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func TestStartedFieldsTick(t *testing.T) {
	clock := newFakeClock()
	d := NewDevice(Options{Now: clock.Now, ControlDelay: time.Second})
	start := clock.Now()
	post(t, d, "/channels/1/publishers/control/start")
	clock.Add(time.Second)
	clock.Add(10 * time.Second)
	srt := publisherStatus(t, d, "1", "1")
	if *srt.Since != start.Add(time.Second).Unix() || *srt.Duration != 10 || *srt.Reconnections != 0 {
		t.Fatalf("since/duration/reconnections = %d/%d/%d, want %d/10/0",
			*srt.Since, *srt.Duration, *srt.Reconnections, start.Add(time.Second).Unix())
	}
	// A second start does not restart a running publisher.
	post(t, d, "/channels/1/publishers/1/control/start")
	if again := publisherStatus(t, d, "1", "1"); again.State != StateStarted || *again.Since != *srt.Since {
		t.Fatalf("after a second start: %+v, want unchanged", again)
	}

	type total struct {
		PktSent      int64   `json:"pkt_sent"`
		PktLoss      *int64  `json:"pkt_loss"`
		PktRetrans   *int64  `json:"pkt_retrans"`
		PktDrop      *int64  `json:"pkt_drop"`
		ByteSent     int64   `json:"byte_sent"`
		MbpsSendRate float64 `json:"mbps_send_rate"`
		MsRTT        float64 `json:"ms_rtt"`
	}
	type stats struct {
		Total   *total         `json:"total"`
		Current map[string]any `json:"current"`
	}
	var prev total
	for i := range 30 {
		var s stats
		st := publisherStatus(t, d, "1", "1")
		if err := json.Unmarshal(st.Statistics, &s); err != nil || s.Total == nil || s.Current == nil {
			t.Fatalf("statistics %s: %v", st.Statistics, err)
		}
		tot := *s.Total
		if tot.PktLoss == nil || tot.PktRetrans == nil || tot.PktDrop == nil || tot.MbpsSendRate <= 0 || tot.MsRTT <= 0 {
			t.Fatalf("statistics total lacks fields: %s", st.Statistics)
		}
		if tot.PktSent <= prev.PktSent || tot.ByteSent <= prev.ByteSent ||
			(i > 0 && (*tot.PktRetrans < *prev.PktRetrans || *tot.PktLoss < *prev.PktLoss)) {
			t.Fatalf("request %d: counters did not grow: %+v after %+v", i, tot, prev)
		}
		prev = tot
	}
	if *prev.PktRetrans == 0 || *prev.PktLoss == 0 {
		t.Errorf("retransmissions and losses never happen: %+v", prev)
	}

	rtmp := publisherStatus(t, d, "1", "0")
	if rtmp.State != StateStarted || rtmp.Statistics != nil || rtmp.Since == nil {
		t.Fatalf("rtmp status = %+v, want started without statistics", rtmp)
	}
}

func TestSetPublisherStatus(t *testing.T) {
	clock := newFakeClock()
	d := NewDevice(Options{Now: clock.Now})
	tests := []struct {
		name   string
		st     PublisherStatus
		wantJS string
	}{
		{
			name:   "unknown state kept",
			st:     PublisherStatus{IsConfigured: true, State: "rebooting"},
			wantJS: `{"is_configured":true,"started":false,"state":"rebooting"}`,
		},
		{
			name:   "error with description",
			st:     PublisherStatus{IsConfigured: true, Started: true, State: StateError, Description: "Connection refused by remote server", Reconnections: 3},
			wantJS: `{"is_configured":true,"started":true,"state":"error","description":"Connection refused by remote server","since":1739540469,"duration":0,"reconnections":3}`,
		},
		{
			name:   "empty statistics and warnings",
			st:     PublisherStatus{IsConfigured: true, Started: true, State: StateStarted, Statistics: json.RawMessage(`[]`), Warnings: []string{"Low bandwidth"}},
			wantJS: `{"is_configured":true,"started":true,"state":"started","since":1739540469,"duration":0,"reconnections":0,"statistics":[],"warnings":[{"text":"Low bandwidth"}]}`,
		},
		{
			name:   "extra fields",
			st:     PublisherStatus{IsConfigured: true, State: StateStopped, Extra: map[string]any{"future_field": map[string]any{"x": 1}}},
			wantJS: `{"is_configured":true,"started":false,"state":"stopped","future_field":{"x":1}}`,
		},
		{
			name:   "empty state",
			st:     PublisherStatus{IsConfigured: true},
			wantJS: `{"is_configured":true,"started":false,"state":"stopped"}`,
		},
		{
			name:   "explicit since",
			st:     PublisherStatus{IsConfigured: true, Started: true, State: StateStarted, Since: clock.Now().Add(-time.Hour)},
			wantJS: `{"is_configured":true,"started":true,"state":"started","since":1739536869,"duration":3600,"reconnections":0}`,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if err := d.SetPublisherStatus("2", "0", tt.st); err != nil {
				t.Fatal(err)
			}
			w := do(t, d, http.MethodGet, "/api/v2.0/channels/2/publishers/0/status")
			var env envelope
			if err := json.Unmarshal(w.Body.Bytes(), &env); err != nil {
				t.Fatal(err)
			}
			if !jsonEqual(t, env.Result, tt.wantJS) {
				t.Fatalf("status = %s, want %s", env.Result, tt.wantJS)
			}
		})
	}
}

func TestScriptingUnknownIDs(t *testing.T) {
	d := NewDevice(Options{})
	var nf *notFoundError
	if err := d.SetPublisherStatus("9", "0", PublisherStatus{}); !errors.As(err, &nf) {
		t.Errorf("SetPublisherStatus on unknown channel: %v", err)
	}
	if _, err := d.PublisherStatus("1", "9"); !errors.As(err, &nf) || !strings.Contains(err.Error(), "streamer '9'") {
		t.Errorf("PublisherStatus on unknown publisher: %v", err)
	}
	if err := d.StartPublisher("1", "9"); err == nil {
		t.Error("StartPublisher on unknown publisher succeeded")
	}
	if err := d.StopPublisher("3", "0"); err == nil {
		t.Error("StopPublisher on unknown channel succeeded")
	}
}

func TestPublisherStatusGetter(t *testing.T) {
	clock := newFakeClock()
	d := NewDevice(Options{Now: clock.Now, ControlDelay: 100 * time.Millisecond})
	if err := d.StartPublisher("1", "0"); err != nil {
		t.Fatal(err)
	}
	st, err := d.PublisherStatus("1", "0")
	if err != nil || st.State != StateStarting || !st.Since.IsZero() {
		t.Fatalf("status = %+v, %v; want starting without since", st, err)
	}
	clock.Add(100 * time.Millisecond)
	clock.Add(5 * time.Second)
	st, _ = d.PublisherStatus("1", "0")
	if st.State != StateStarted || st.Duration != 5*time.Second || !st.Since.Equal(clock.Now().Add(-5*time.Second)) {
		t.Fatalf("status = %+v, want started for 5s", st)
	}
	// The returned status is a copy.
	st.Warnings = append(st.Warnings, "x")
	if again, _ := d.PublisherStatus("1", "0"); len(again.Warnings) != 0 {
		t.Fatal("PublisherStatus returned shared state")
	}
	if err := d.StopPublisher("1", "0"); err != nil {
		t.Fatal(err)
	}
	if st, _ = d.PublisherStatus("1", "0"); st.State != StateStopped || st.Started || st.Duration != 0 {
		t.Fatalf("after stop: %+v", st)
	}
}

func TestSystemStatus(t *testing.T) {
	clock := newFakeClock()
	tests := []struct {
		name     string
		set      *SystemStatus
		advance  time.Duration
		wantJSON string
	}{
		{
			name:     "defaults",
			advance:  3 * time.Second,
			wantJSON: `{"date":"2025-02-14T13:41:12+00:00","uptime":5493,"cpuload":25,"cpuload_high":false,"cputemp":57,"cputemp_threshold":70}`,
		},
		{
			name:     "iso date ticks in its zone",
			set:      &SystemStatus{Date: "2025-02-14T08:41:09-05:00", Uptime: 100, CPULoad: 90, CPULoadHigh: true, CPUTemp: 71, CPUTempThreshold: 70},
			advance:  61 * time.Second,
			wantJSON: `{"date":"2025-02-14T08:42:10-05:00","uptime":161,"cpuload":90,"cpuload_high":true,"cputemp":71,"cputemp_threshold":70}`,
		},
		{
			name:     "epoch date",
			set:      &SystemStatus{Date: 1739540469, Uptime: 5490, CPULoad: 25, CPUTemp: 57, CPUTempThreshold: 70},
			advance:  2500 * time.Millisecond,
			wantJSON: `{"date":1739540471,"uptime":5492,"cpuload":25,"cpuload_high":false,"cputemp":57,"cputemp_threshold":70}`,
		},
		{
			name:     "verbatim date",
			set:      &SystemStatus{Date: "Fri Feb 14 2025", Uptime: 1},
			wantJSON: `{"date":"Fri Feb 14 2025","uptime":1,"cpuload":0,"cpuload_high":false,"cputemp":0,"cputemp_threshold":0}`,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d := NewDevice(Options{Now: clock.Now, System: tt.set})
			clock.Add(tt.advance)
			w := do(t, d, http.MethodGet, "/api/v2.0/system/status")
			var env envelope
			if err := json.Unmarshal(w.Body.Bytes(), &env); err != nil || env.Status != "ok" {
				t.Fatalf("body %s: %v", w.Body, err)
			}
			if !jsonEqual(t, env.Result, tt.wantJSON) {
				t.Fatalf("system status = %s, want %s", env.Result, tt.wantJSON)
			}
		})
	}
}

func TestSetSystemAndReboot(t *testing.T) {
	clock := newFakeClock()
	d := NewDevice(Options{Now: clock.Now, ControlDelay: -1})
	d.SetSystem(SystemStatus{Date: int64(1739540469), Uptime: 1000, CPULoad: 50, CPUTemp: 60, CPUTempThreshold: 75})
	clock.Add(10 * time.Second)
	if s := d.System(); s.Uptime != 1010 || s.Date != int64(1739540479) || s.CPULoad != 50 {
		t.Fatalf("System() = %+v", s)
	}
	if err := d.StartPublisher("1", "1"); err != nil {
		t.Fatal(err)
	}
	if st, _ := d.PublisherStatus("1", "1"); st.State != StateStarted {
		t.Fatalf("with no control delay, state = %q", st.State)
	}
	d.Reboot()
	clock.Add(2 * time.Second)
	s := getResult[apiSystem](t, d, "/api/v2.0/system/status")
	if s.Uptime != 2 {
		t.Errorf("uptime after reboot = %d, want 2", s.Uptime)
	}
	if s.Date != float64(1739540481) {
		t.Errorf("date after reboot = %v, want the clock to go on", s.Date)
	}
	for _, c := range getResult[[]apiChannel](t, d, "/api/v2.0/channels?publishers=true&publishers-status=true") {
		for _, p := range c.Publishers {
			if p.Status.Started || p.Status.State != StateStopped {
				t.Errorf("after reboot %s/%s = %+v, want stopped", c.ID, p.ID, p.Status)
			}
		}
	}
}

func TestIdentAndFirmwareOptions(t *testing.T) {
	d := NewDevice(Options{Name: "Lecture Hall", Location: "Building A", Description: "Main", Firmware: "10.2.5.110", Product: "Pearl Nano"})
	ident := getResult[map[string]string](t, d, "/api/v2.0/system/ident")
	if ident["name"] != "Lecture Hall" || ident["location"] != "Building A" || ident["description"] != "Main" {
		t.Errorf("ident = %v", ident)
	}
	fw := getResult[map[string]any](t, d, "/api/v2.0/system/firmware")
	if fw["version"] != "10.2.5.110" || fw["product_name"] != "Pearl Nano" {
		t.Errorf("firmware = %v", fw)
	}
	d.SetName("")
	if ident = getResult[map[string]string](t, d, "/api/v2.0/system/ident"); ident["name"] != "" {
		t.Errorf("name after SetName(\"\") = %q", ident["name"])
	}
}

func TestAddRemoveChannel(t *testing.T) {
	d := NewDevice(Options{})
	d.AddChannel(Channel{ID: "10", Name: "Ten", Encoder: &Encoder{Bitrate: 8000, Resolution: "1280x720", Framerate: 60},
		Publishers: []Publisher{{ID: "3", Type: TypeSRT, Name: "S", Status: PublisherStatus{IsConfigured: true}}}})
	d.AddChannel(Channel{ID: "1", Name: "Renamed"})
	d.RemoveChannel("2")
	d.RemoveChannel("404")
	chans := getResult[[]apiChannel](t, d, "/api/v2.0/channels?publishers=true&encoders=true")
	if len(chans) != 2 || chans[0].ID != "1" || chans[0].Name != "Renamed" || len(chans[0].Publishers) != 0 ||
		chans[1].ID != "10" || chans[1].Publishers[0].ID != "3" {
		t.Fatalf("channels = %+v", chans)
	}
	if e := chans[1].Encoders[0]; e.Bitrate != 8000 || e.Resolution != "1280x720" || e.Framerate != 60 || e.Name != "H.264" {
		t.Errorf("encoder = %+v", e)
	}
	got := d.Channels()
	if len(got) != 2 || got[1].Encoder.Bitrate != 8000 || got[1].Publishers[0].Mode != ModeCaller {
		t.Errorf("Channels() = %+v", got)
	}
}

func TestCountersAndConcurrency(t *testing.T) {
	d := NewDevice(Options{})
	do(t, d, http.MethodGet, "/api/v2.0/channels")
	do(t, d, http.MethodGet, "/api/v2.0/channels?ids=1")
	do(t, d, http.MethodGet, "/api/v2.0/bogus")
	d.SetFault(FaultUnavailable)
	do(t, d, http.MethodGet, "/api/v2.0/channels")
	d.SetFault(FaultNone)
	if got := d.Requests("/api/v2.0/channels"); got != 3 {
		t.Errorf("Requests(channels) = %d, want 3", got)
	}
	if got := d.TotalRequests(); got != 4 {
		t.Errorf("TotalRequests = %d, want 4", got)
	}
	if got := d.MaxInFlight(); got != 1 {
		t.Errorf("MaxInFlight = %d, want 1", got)
	}
	d.ResetCounters()
	if d.TotalRequests() != 0 || d.Requests("/api/v2.0/channels") != 0 || d.MaxInFlight() != 0 {
		t.Error("ResetCounters left counts")
	}

	tests := []struct {
		name          string
		maxConcurrent int
		requests      int
		want503       int
	}{
		{name: "unlimited", requests: 5},
		{name: "limit 3", maxConcurrent: 3, requests: 5, want503: 2},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d := NewDevice(Options{MaxConcurrent: tt.maxConcurrent})
			d.SetFault(FaultSlow)
			d.SetFaultDelay(300 * time.Millisecond)
			var wg sync.WaitGroup
			codes := make(chan int, tt.requests)
			for range tt.requests {
				wg.Go(func() { codes <- do(t, d, http.MethodGet, "/api/v2.0/system/status").Code })
			}
			wg.Wait()
			close(codes)
			n503 := 0
			for c := range codes {
				if c == http.StatusServiceUnavailable {
					n503++
				}
			}
			// Requests over the limit are in flight only briefly, so the high
			// mark sees at least one of them.
			want := tt.requests
			if tt.maxConcurrent > 0 {
				want = tt.maxConcurrent + 1
			}
			if d.MaxInFlight() < want {
				t.Errorf("MaxInFlight = %d, want at least %d", d.MaxInFlight(), want)
			}
			if n503 != tt.want503 {
				t.Errorf("%d answers were 503, want %d", n503, tt.want503)
			}
		})
	}
}
