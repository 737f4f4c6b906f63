package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"hash/fnv"
	"math"
	"strconv"
	"sync"
	"time"

	"github.com/pearld/pearld/sdk"
	"github.com/pearld/pearld/sources/pearl"
)

// TypeStreamQuality is the data type of the plugin's events.
const TypeStreamQuality = "stream_quality"

// version is the plugin's version.
const version = "1.0.0"

// Plugin returns the plugin's declaration.
func Plugin() sdk.Plugin {
	return sdk.Plugin{
		Name:        "stream_quality",
		Version:     version,
		Description: "Configured encoding and live publisher statistics (send rate, RTT, loss, drop, retransmits) per device and channel.",
		DataTypes:   []string{TypeStreamQuality},
		Fields: []sdk.Field{{
			Name:        "threshold",
			Type:        sdk.Float,
			Default:     0.1,
			Description: "relative move of a figure (0.1 = 10%) since the last event that makes a new event",
		}},
		New: newSource,
	}
}

func newSource(cfg sdk.Config) (sdk.Source, error) {
	t := cfg.Float("threshold")
	if t <= 0 || t > 10 || math.IsNaN(t) {
		return nil, sdk.BadOption("threshold", "must be above 0 and at most 10 (0.1 means 10%%), not %g", t)
	}
	return &source{threshold: t, devices: map[string]*deviceState{}}, nil
}

// source keeps, per device and channel, what it last emitted and the SRT
// counters of the last poll.
type source struct {
	threshold float64

	mu      sync.Mutex
	devices map[string]*deviceState
}

type deviceState struct {
	channels map[string]*channelState
}

type channelState struct {
	emitted *Quality            // the data of the last event
	totals  map[string]srtTotal // SRT counters of the last poll, per publisher
}

var query = pearl.ChannelsOptions{Publishers: true, Status: true, Encoders: true}

// Poll reads every channel of the device in one request and returns the
// events of the channels whose quality changed.
func (s *source) Poll(ctx context.Context, d *sdk.Device) ([]sdk.Event, error) {
	chans, err := d.Client().Channels(ctx, query)
	if err != nil {
		return nil, err
	}
	now := time.Now()
	s.mu.Lock()
	st := s.devices[d.Name()]
	if st == nil {
		st = &deviceState{channels: map[string]*channelState{}}
		s.devices[d.Name()] = st
	}
	s.mu.Unlock()

	var events []sdk.Event
	seen := map[string]bool{}
	for _, ch := range chans {
		if ch.ID == "" || seen[ch.ID] {
			continue
		}
		seen[ch.ID] = true
		cs := st.channels[ch.ID]
		if cs == nil {
			cs = &channelState{}
			st.channels[ch.ID] = cs
		}
		q, totals := measure(d, ch, cs.totals, now)
		cs.totals = totals
		if cs.emitted == nil || moved(cs.emitted, q, s.threshold) {
			cs.emitted = q
			events = append(events, event(q, now))
		}
	}
	for id, cs := range st.channels {
		if seen[id] {
			continue
		}
		delete(st.channels, id)
		q := &Quality{DeviceID: d.Name(), DeviceIP: d.Host(), Channel: id, Publishers: []PublisherQuality{}}
		if cs.emitted != nil {
			events = append(events, event(q, now))
		}
	}
	return events, nil
}

// Quality is the data of a stream_quality event.
type Quality struct {
	DeviceID   string             `json:"device_id"`
	DeviceIP   string             `json:"device_ip"`
	Channel    string             `json:"channel"`
	Encoder    *Encoding          `json:"encoder,omitempty"`
	Publishers []PublisherQuality `json:"publishers"`
	// Streaming is true while a publisher of the channel is started.
	Streaming bool   `json:"streaming"`
	FetchedAt string `json:"fetched_at"` // ISO-8601 UTC with milliseconds
}

// Encoding is a channel's configured encoding (absent figures: not
// reported by the device).
type Encoding struct {
	Codec            string `json:"codec,omitempty"`
	Resolution       string `json:"resolution,omitempty"`
	Framerate        int    `json:"framerate,omitempty"`
	VideoBitrateKbps int    `json:"video_bitrate_kbps,omitempty"`
	AudioCodec       string `json:"audio_codec,omitempty"`
	AudioBitrateKbps int    `json:"audio_bitrate_kbps,omitempty"`
	AudioChannels    int    `json:"audio_channels,omitempty"`
}

// PublisherQuality is a publisher's state and live figures; the figures
// are absent when the device does not report them.
type PublisherQuality struct {
	ID              string   `json:"id"`
	Name            string   `json:"name,omitempty"`
	Type            string   `json:"type"`
	State           string   `json:"state"`
	Started         bool     `json:"started"`
	SendRateMbps    *float64 `json:"send_rate_mbps,omitempty"`
	RTTMs           *float64 `json:"rtt_ms,omitempty"`
	LossRatio       *float64 `json:"loss_ratio,omitempty"`
	DropRatio       *float64 `json:"drop_ratio,omitempty"`
	RetransmitRatio *float64 `json:"retransmit_ratio,omitempty"`
}

// event makes the event of q. Its hash leaves out fetched_at, so that an
// unchanged channel (after a plugin restart) is recognised by dedup.
func event(q *Quality, now time.Time) sdk.Event {
	c := *q
	c.FetchedAt = ""
	b, _ := json.Marshal(c) // only strings, numbers and booleans
	h := fnv.New64a()
	_, _ = h.Write(b)
	q.FetchedAt = now.UTC().Format("2006-01-02T15:04:05.000Z")
	return sdk.Event{Type: TypeStreamQuality, Channel: q.Channel, Time: now, Data: q, Hash: h.Sum64()}
}

// measure builds the quality of a channel from its answer, and returns the
// SRT counters to compare the next poll with.
func measure(d *sdk.Device, ch pearl.Channel, prev map[string]srtTotal, now time.Time) (*Quality, map[string]srtTotal) {
	q := &Quality{DeviceID: d.Name(), DeviceIP: d.Host(), Channel: ch.ID, Publishers: []PublisherQuality{}}
	for _, e := range ch.Encoders {
		if q.Encoder == nil {
			q.Encoder = &Encoding{}
		}
		switch e.Type {
		case "video":
			q.Encoder.Codec, q.Encoder.Resolution, q.Encoder.Framerate, q.Encoder.VideoBitrateKbps = e.Name, e.Resolution, e.Framerate, e.Bitrate
		case "audio":
			q.Encoder.AudioCodec, q.Encoder.AudioBitrateKbps, q.Encoder.AudioChannels = e.Name, e.Bitrate, e.Channels
		}
	}
	totals := map[string]srtTotal{}
	seen := map[string]bool{}
	for _, p := range ch.Publishers {
		if seen[p.ID] {
			continue
		}
		seen[p.ID] = true
		pq := PublisherQuality{ID: p.ID, Name: p.Name, Type: p.Type}
		if st := p.Status; st != nil {
			pq.State, pq.Started = string(st.State), st.Started
			if st.State == pearl.StateStarted {
				q.Streaming = true
			}
			if st.Started {
				if t := figures(&pq, st.Statistics, prev[p.ID]); t.valid {
					totals[p.ID] = t
				}
			}
		}
		q.Publishers = append(q.Publishers, pq)
	}
	return q, totals
}

// srtTotal are the cumulative SRT counters of a publisher.
type srtTotal struct {
	valid                    bool
	sent, loss, drop, retran float64
}

// figures fills in a publisher's live figures from its statistics and
// returns its counters.
func figures(pq *PublisherQuality, raw json.RawMessage, prev srtTotal) srtTotal {
	var stats struct {
		Total   map[string]any `json:"total"`
		Current map[string]any `json:"current"`
	}
	d := json.NewDecoder(bytes.NewReader(raw))
	d.UseNumber()
	if len(raw) == 0 || d.Decode(&stats) != nil {
		return srtTotal{} // absent, [] or not an object: nothing reported
	}
	cur, tot := stats.Current, stats.Total
	pq.SendRateMbps = first(number(cur, "send_rate"), number(tot, "mbps_send_rate"))
	pq.RTTMs = number(tot, "ms_rtt")
	if pq.RTTMs == nil {
		if us := number(cur, "rtt"); us != nil {
			pq.RTTMs = ptr(*us / 1000)
		}
	}
	t := srtTotal{}
	if sent := number(tot, "pkt_sent"); sent != nil {
		t = srtTotal{valid: true, sent: *sent, loss: zero(number(tot, "pkt_loss")),
			drop: zero(number(tot, "pkt_drop")), retran: zero(number(tot, "pkt_retrans"))}
	}
	// Ratios over this poll's packets; over all packets on the first poll
	// or after the counters restarted; else the device's own.
	base := prev
	if !prev.valid || t.sent < prev.sent {
		base = srtTotal{}
	}
	if dSent := t.sent - base.sent; t.valid && dSent > 0 {
		pq.LossRatio = ptr(round4(max(t.loss-base.loss, 0) / dSent))
		pq.DropRatio = ptr(round4(max(t.drop-base.drop, 0) / dSent))
		pq.RetransmitRatio = ptr(round4(max(t.retran-base.retran, 0) / dSent))
	} else {
		pq.LossRatio = number(cur, "loss_ratio")
		pq.DropRatio = number(cur, "drop_ratio")
		pq.RetransmitRatio = number(cur, "retrans_ratio")
	}
	return t
}

// Floors of the relative comparison: a move smaller than threshold times
// the floor is noise, whatever the old value.
const (
	floorRatio = 0.005
	floorRTT   = 1.0 // ms
	floorRate  = 0.1 // Mbit/s
)

// moved reports whether cur differs from the last event's data old enough
// to make an event.
func moved(old, cur *Quality, threshold float64) bool {
	if old.Streaming != cur.Streaming || !sameEncoding(old.Encoder, cur.Encoder) || len(old.Publishers) != len(cur.Publishers) {
		return true
	}
	for i := range cur.Publishers {
		a, b := &old.Publishers[i], &cur.Publishers[i]
		switch {
		case a.ID != b.ID, a.Type != b.Type, a.Name != b.Name, a.State != b.State, a.Started != b.Started,
			beyond(a.SendRateMbps, b.SendRateMbps, floorRate, threshold),
			beyond(a.RTTMs, b.RTTMs, floorRTT, threshold),
			beyond(a.LossRatio, b.LossRatio, floorRatio, threshold),
			beyond(a.DropRatio, b.DropRatio, floorRatio, threshold),
			beyond(a.RetransmitRatio, b.RetransmitRatio, floorRatio, threshold):
			return true
		}
	}
	return false
}

func sameEncoding(a, b *Encoding) bool {
	if a == nil || b == nil {
		return a == b
	}
	return *a == *b
}

// beyond reports whether a figure appeared, disappeared or moved by more
// than threshold relative to old (or to floor, when old is smaller).
func beyond(old, cur *float64, floor, threshold float64) bool {
	if old == nil || cur == nil {
		return (old == nil) != (cur == nil)
	}
	return math.Abs(*cur-*old) > threshold*max(math.Abs(*old), floor)
}

// number reads a numeric field that may be a number or a numeric string.
func number(m map[string]any, key string) *float64 {
	var f float64
	var err error
	switch v := m[key].(type) {
	case json.Number:
		f, err = v.Float64()
	case string:
		f, err = strconv.ParseFloat(v, 64)
	default:
		err = errors.New("not a number")
	}
	if err != nil || math.IsNaN(f) || math.IsInf(f, 0) {
		return nil
	}
	return &f
}

func first(vs ...*float64) *float64 {
	for _, v := range vs {
		if v != nil {
			return v
		}
	}
	return nil
}

func zero(v *float64) float64 {
	if v == nil {
		return 0
	}
	return *v
}

func round4(f float64) float64 { return math.Round(f*1e4) / 1e4 }

func ptr[T any](v T) *T { return &v }
