package main

import (
	"context"
	"encoding/json"
	"errors"
	"testing"
	"time"

	"github.com/pearld/pearld/sdk"
	"github.com/pearld/pearld/sdk/sdktest"
	"github.com/pearld/pearld/sources/pearl/pearltest"
)

func start(t *testing.T, options map[string]any) *sdktest.Host {
	t.Helper()
	h, err := sdktest.Start(Plugin())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = h.Close() })
	if err := h.Configure(context.Background(), options); err != nil {
		t.Fatal(err)
	}
	return h
}

func poll(t *testing.T, h *sdktest.Host, d sdk.DeviceConfig) map[string]Quality {
	t.Helper()
	events, err := h.Poll(context.Background(), d)
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]Quality{}
	for _, e := range events {
		if e.Type != TypeStreamQuality || e.Device != d.Name {
			t.Fatalf("event %+v", e)
		}
		var q Quality
		if err := json.Unmarshal(e.Data, &q); err != nil {
			t.Fatal(err)
		}
		if q.Channel != e.Channel {
			t.Fatalf("data channel %q, event channel %q", q.Channel, e.Channel)
		}
		out[e.Channel] = q
	}
	return out
}

func TestFirstPollThenOnlyChanges(t *testing.T) {
	srv, dev := sdktest.NewDevice("studio-a", pearltest.Options{Password: "pw"})
	defer srv.Close()
	h := start(t, nil)

	first := poll(t, h, dev)
	if len(first) != 2 {
		t.Fatalf("first poll: %d channels, want 2: %v", len(first), first)
	}
	q := first["1"]
	want := Encoding{Codec: "H.264", Resolution: "1920x1080", Framerate: 30, VideoBitrateKbps: 3000, AudioCodec: "AAC", AudioBitrateKbps: 128, AudioChannels: 2}
	if q.Encoder == nil || *q.Encoder != want || q.Streaming || q.DeviceID != "studio-a" || q.DeviceIP != "127.0.0.1" || q.FetchedAt == "" {
		t.Fatalf("first quality = %+v (encoder %+v)", q, q.Encoder)
	}
	for range 3 {
		if got := poll(t, h, dev); len(got) != 0 {
			t.Fatalf("stable device emitted %v", got)
		}
	}

	// An SRT publisher starts: an event with its live figures.
	if err := srv.Device.SetPublisherStatus("1", "1", pearltest.PublisherStatus{IsConfigured: true, Started: true, State: "started"}); err != nil {
		t.Fatal(err)
	}
	got := poll(t, h, dev)
	q, ok := got["1"]
	if !ok || len(got) != 1 || !q.Streaming {
		t.Fatalf("after SRT start: %v", got)
	}
	p := q.Publishers[1]
	if p.Type != "srt" || p.State != "started" || p.SendRateMbps == nil || p.RTTMs == nil || p.LossRatio == nil || p.DropRatio == nil || p.RetransmitRatio == nil {
		t.Fatalf("SRT publisher = %+v", p)
	}
	if rtmp := q.Publishers[0]; rtmp.SendRateMbps != nil || rtmp.LossRatio != nil {
		t.Fatalf("RTMP publisher has figures: %+v", rtmp)
	}

	// It stops: an event.
	if err := srv.Device.StopPublisher("1", "1"); err != nil {
		t.Fatal(err)
	}
	if got := poll(t, h, dev); got["1"].Streaming || len(got) != 1 {
		t.Fatalf("after stop: %v", got)
	}

	// The channel disappears: one event with no publishers.
	srv.Device.RemoveChannel("2")
	if got := poll(t, h, dev); len(got) != 1 || len(got["2"].Publishers) != 0 {
		t.Fatalf("after removal: %v", got)
	}
}

func TestThreshold(t *testing.T) {
	srv, dev := sdktest.NewDevice("studio-a", pearltest.Options{})
	defer srv.Close()
	h := start(t, map[string]any{"threshold": 0.1})
	rate := func(mbps float64) {
		t.Helper()
		stats, _ := json.Marshal(map[string]any{"current": map[string]any{"send_rate": mbps, "rtt": 1000}})
		if err := srv.Device.SetPublisherStatus("1", "1", pearltest.PublisherStatus{IsConfigured: true, Started: true, State: "started", Statistics: stats}); err != nil {
			t.Fatal(err)
		}
	}
	rate(3.0)
	poll(t, h, dev)
	tests := []struct {
		name string
		mbps float64
		emit bool
	}{
		{"small move", 3.2, false},
		{"still within 10% of the last event", 3.29, false},
		{"beyond 10%", 3.4, true},
		{"back within 10% of the new value", 3.2, false},
		{"drop", 1.0, true},
	}
	for _, tt := range tests {
		rate(tt.mbps)
		got := poll(t, h, dev)
		if emitted := len(got) > 0; emitted != tt.emit {
			t.Errorf("%s (%.2f Mbit/s): emitted %v, want %v", tt.name, tt.mbps, emitted, tt.emit)
		}
		if tt.emit && *got["1"].Publishers[1].SendRateMbps != tt.mbps {
			t.Errorf("%s: send rate %v", tt.name, *got["1"].Publishers[1].SendRateMbps)
		}
	}
}

func TestRatiosFromCounterDeltas(t *testing.T) {
	srv, dev := sdktest.NewDevice("studio-a", pearltest.Options{})
	defer srv.Close()
	h := start(t, nil)
	set := func(sent, loss, retrans int) {
		stats, _ := json.Marshal(map[string]any{"total": map[string]any{"pkt_sent": sent, "pkt_loss": loss, "pkt_drop": 0, "pkt_retrans": retrans, "ms_rtt": 2.5}})
		if err := srv.Device.SetPublisherStatus("1", "1", pearltest.PublisherStatus{IsConfigured: true, Started: true, State: "started", Statistics: stats}); err != nil {
			t.Fatal(err)
		}
	}
	set(1000, 10, 0)
	p := poll(t, h, dev)["1"].Publishers[1]
	if *p.LossRatio != 0.01 || *p.RTTMs != 2.5 {
		t.Fatalf("first poll: loss %v rtt %v, want the cumulative 0.01 and 2.5", *p.LossRatio, *p.RTTMs)
	}
	set(2000, 110, 50) // this poll: 100 lost and 50 retransmitted of 1000
	p = poll(t, h, dev)["1"].Publishers[1]
	if *p.LossRatio != 0.1 || *p.RetransmitRatio != 0.05 || *p.DropRatio != 0 {
		t.Fatalf("second poll: %+v", p)
	}
}

func TestOptions(t *testing.T) {
	h, err := sdktest.Start(Plugin())
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close()
	ctx := context.Background()
	for _, bad := range []map[string]any{{"threshold": 0}, {"threshold": "high"}, {"thresold": 0.2}} {
		var oe *sdk.OptionError
		if err := h.Validate(ctx, bad); !errors.As(err, &oe) {
			t.Errorf("options %v: %v, want an OptionError", bad, err)
		}
	}
	d, err := h.Describe(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if d.Name != "stream_quality" || len(d.Fields) != 1 || d.Fields[0].Default != "0.1" || d.Fields[0].Type != "float" {
		t.Fatalf("description = %+v", d)
	}
}

func TestDeviceFailure(t *testing.T) {
	srv, dev := sdktest.NewDevice("studio-a", pearltest.Options{Password: "right"})
	defer srv.Close()
	h := start(t, nil)
	dev.Password = "wrong"
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	_, err := h.Poll(ctx, dev)
	var de *sdktest.DeviceError
	if !errors.As(err, &de) || de.Reason != "unauthorized" {
		t.Fatalf("poll with a wrong password: %v", err)
	}
}
