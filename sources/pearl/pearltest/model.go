package pearltest

import (
	"encoding/json"
	"maps"
	"slices"
	"time"
)

// Publisher states a Pearl reports. No "stopping" state exists; any other
// string may be set with SetPublisherStatus to test a client's robustness.
const (
	StateStarting  = "starting"
	StateListening = "listening"
	StateStarted   = "started"
	StateStopped   = "stopped"
	StateError     = "error"
)

// Publisher types used by the default layouts. Any string from the spec's
// PublisherType enum (rtsp, rtmp, rtp-udp, mpegts-udp, mpegts-rtp, ndi, hls,
// srt) or outside it may be used.
const (
	TypeRTMP = "rtmp"
	TypeSRT  = "srt"
)

// SRT modes for Publisher.Mode.
const (
	ModeCaller     = "caller"
	ModeListener   = "listener"
	ModeRendezvous = "rendezvous"
)

// Channel is one channel of a Device: an id (a string, not necessarily 1..N),
// a display name, its publishers (streams) and its configured encoders.
type Channel struct {
	ID         string
	Name       string
	Publishers []Publisher
	// Encoder is the channel's configured encoding, reported with
	// ?encoders=true. Nil means the defaults (see Encoder).
	Encoder *Encoder
}

// Publisher is one stream of a channel. Status.IsConfigured must be true for
// a start to succeed; a zero Status is an unconfigured, stopped publisher.
type Publisher struct {
	ID   string
	Type string
	Name string
	// Mode is the SRT mode: caller (the default), listener or rendezvous.
	// A started listener publisher reports "listening" rather than
	// "started". Ignored for other types.
	Mode   string
	Status PublisherStatus
}

// PublisherStatus is the status of a publisher as the API reports it, plus
// the values the fake generates while the publisher runs.
type PublisherStatus struct {
	IsConfigured bool
	Started      bool
	// State is starting, listening, started, stopped or error, or any
	// other string; "" is read as stopped (started if Started is set).
	State string
	// Description explains the error state.
	Description string

	// Since is when the publisher started streaming; it is reported (with
	// duration and reconnections) while Started is true. SetPublisherStatus
	// sets a zero Since to the current time when Started is true and the
	// state is not starting.
	Since time.Time
	// Duration is how long the publisher has been streaming. It is filled
	// in by Device.PublisherStatus and ignored by SetPublisherStatus.
	Duration time.Duration
	// Reconnections counts reconnections during the streaming.
	Reconnections int
	// Warnings are reported as warnings: [{"text": ...}] when not empty.
	Warnings []string
	// Statistics, when not nil, is served verbatim as "statistics" (for
	// example `[]`) instead of the generated SRT statistics.
	Statistics json.RawMessage
	// Extra fields are merged into the status object, to test that a
	// client ignores fields it does not know.
	Extra map[string]any
}

// Encoder is the configured encoding of a channel, reported with
// ?encoders=true as a video encoder (id "0") and an audio encoder (id "1")
// per the spec's Encoder schema. Zero fields take the defaults shown.
type Encoder struct {
	Codec         string // video codec name, default "H.264"
	Resolution    string // default "1920x1080"
	Framerate     int    // frames per second, default 30
	Bitrate       int    // video kbit/s, default 3000
	AudioCodec    string // default "AAC"
	AudioBitrate  int    // kbit/s, default 128
	AudioChannels int    // 1 or 2, default 2
}

// SystemStatus is the device health reported by /system/status.
type SystemStatus struct {
	// Date is the device clock. A string in RFC 3339 form or a time.Time
	// makes the device report an ISO string, an integer (int, int64, ...)
	// an epoch integer; either then ticks with time. Any other value is
	// reported verbatim. Nil means the current time as an ISO string.
	// System returns a string or an int64.
	Date             any
	Uptime           int64 // seconds since boot; ticks with time
	CPULoad          int   // percent
	CPULoadHigh      bool
	CPUTemp          int // degrees Celsius
	CPUTempThreshold int
}

// DefaultChannels returns the layout a Device gets when Options.Channels is
// nil: channel "1" with publishers "0" (rtmp, "Stream 1") and "1" (srt,
// "Stream 2"), channel "2" with publisher "0" (rtmp); all configured and
// stopped.
func DefaultChannels() []Channel {
	stopped := PublisherStatus{IsConfigured: true, State: StateStopped}
	return []Channel{
		{ID: "1", Name: "HDMI-A", Publishers: []Publisher{
			{ID: "0", Type: TypeRTMP, Name: "Stream 1", Status: stopped},
			{ID: "1", Type: TypeSRT, Name: "Stream 2", Mode: ModeCaller, Status: stopped},
		}},
		{ID: "2", Name: "HDMI-B", Publishers: []Publisher{
			{ID: "0", Type: TypeRTMP, Name: "Stream 1", Status: stopped},
		}},
	}
}

// withDefaults returns e with zero fields set to the defaults.
func (e *Encoder) withDefaults() Encoder {
	var out Encoder
	if e != nil {
		out = *e
	}
	if out.Codec == "" {
		out.Codec = "H.264"
	}
	if out.Resolution == "" {
		out.Resolution = "1920x1080"
	}
	if out.Framerate == 0 {
		out.Framerate = 30
	}
	if out.Bitrate == 0 {
		out.Bitrate = 3000
	}
	if out.AudioCodec == "" {
		out.AudioCodec = "AAC"
	}
	if out.AudioBitrate == 0 {
		out.AudioBitrate = 128
	}
	if out.AudioChannels == 0 {
		out.AudioChannels = 2
	}
	return out
}

// clone returns a deep copy of st.
func (st PublisherStatus) clone() PublisherStatus {
	st.Warnings = slices.Clone(st.Warnings)
	st.Statistics = slices.Clone(st.Statistics)
	st.Extra = maps.Clone(st.Extra)
	return st
}

// isRunning reports whether a state counts as streaming for Since.
func isRunning(state string) bool {
	return state != StateStarting && state != StateStopped
}
