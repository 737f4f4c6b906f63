package pearl

import (
	"encoding/json"
	"time"
)

// PublisherState is the state of a publisher. A device may report values
// other than the constants (future firmware): they are kept verbatim.
type PublisherState string

// The publisher states of the API document. There is no "stopping" state.
const (
	StateStarting  PublisherState = "starting"
	StateListening PublisherState = "listening"
	StateStarted   PublisherState = "started"
	StateStopped   PublisherState = "stopped"
	StateError     PublisherState = "error"
)

// Channel is a channel as GET /channels returns it. Publishers and
// Encoders are filled in when ChannelsOptions asked for them.
type Channel struct {
	ID         string      `json:"id"`
	Name       string      `json:"name"`
	Publishers []Publisher `json:"publishers,omitempty"`
	Encoders   []Encoder   `json:"encoders,omitempty"`
}

// Publisher is one stream of a channel. Status is nil unless
// ChannelsOptions.Status asked for it.
type Publisher struct {
	ID     string           `json:"id"`
	Type   string           `json:"type"` // rtmp, srt, rtsp, ...; unknown types are kept
	Name   string           `json:"name"`
	Status *PublisherStatus `json:"status,omitempty"`
}

// PublisherStatus is the status of a publisher. IsConfigured, Started,
// State and Description define its state; the other fields move while it
// streams.
type PublisherStatus struct {
	IsConfigured bool           `json:"is_configured"`
	Started      bool           `json:"started"`
	State        PublisherState `json:"state"`
	// Description explains the error state.
	Description string `json:"description,omitempty"`
	// Duration is how long the publisher has been streaming, in seconds.
	Duration int64 `json:"duration,omitempty"`
	// Since is when it started streaming, in seconds since the Unix epoch.
	Since int64 `json:"since,omitempty"`
	// Reconnections counts reconnections during the streaming.
	Reconnections int64              `json:"reconnections,omitempty"`
	Warnings      []PublisherWarning `json:"warnings,omitempty"`
	// Statistics is free-form (SRT publishers report counters; it may be
	// `[]` or absent), kept verbatim.
	Statistics json.RawMessage `json:"statistics,omitempty"`
}

// PublisherWarning is a warning a started publisher may report.
type PublisherWarning struct {
	Text string `json:"text"`
}

// Encoder is a configured encoder of a channel (GET /channels?encoders=true).
type Encoder struct {
	ID         string `json:"id"`
	Type       string `json:"type"` // video or audio
	Name       string `json:"name"` // codec, such as "H.264"
	Resolution string `json:"resolution,omitempty"`
	Framerate  int    `json:"framerate,omitempty"`
	Bitrate    int    `json:"bitrate,omitempty"`  // kbit/s
	Channels   int    `json:"channels,omitempty"` // audio: 1 mono, 2 stereo
}

// SystemStatus is the health a device reports (GET /system/status).
type SystemStatus struct {
	// Date is the device's clock; zero when it sent none or a value that
	// is neither an ISO-8601 string nor an epoch number.
	Date time.Time `json:"date"`
	// Uptime is the time since the last boot, in seconds.
	Uptime int64 `json:"uptime"`
	// CPULoad is a percentage.
	CPULoad     int  `json:"cpuload"`
	CPULoadHigh bool `json:"cpuload_high"`
	// CPUTemp and CPUTempThreshold are in degrees Celsius; the device
	// has no "too hot" flag: compare the two.
	CPUTemp          int `json:"cputemp"`
	CPUTempThreshold int `json:"cputemp_threshold"`
}

// Ident is the identity of a device (GET /system/ident). Name may be "".
type Ident struct {
	Name        string `json:"name"`
	Location    string `json:"location"`
	Description string `json:"description"`
}

// Firmware describes a device's firmware (GET /system/firmware). Version
// may have four parts, such as "10.2.5.110".
type Firmware struct {
	Version     string `json:"version"`
	Revision    string `json:"revision,omitempty"`
	ProductID   int    `json:"product_id,omitempty"`
	ProductName string `json:"product_name,omitempty"`
}

// The UnmarshalJSON methods below decode what the API document promises
// and what devices send instead: ids as numbers, numbers as strings,
// booleans as 0/1, dates as ISO strings or epoch numbers. Each decodes
// into a shadow struct that embeds the plain type (without methods) and
// overrides the tolerant fields, so unknown fields are ignored as usual.

// UnmarshalJSON decodes a channel, accepting a numeric id.
func (c *Channel) UnmarshalJSON(b []byte) error {
	type plain Channel
	v := struct {
		*plain
		ID   flexString `json:"id"`
		Name flexString `json:"name"`
	}{plain: (*plain)(c)}
	if err := json.Unmarshal(b, &v); err != nil {
		return err
	}
	c.ID, c.Name = string(v.ID), string(v.Name)
	return nil
}

// UnmarshalJSON decodes a publisher, accepting a numeric id.
func (p *Publisher) UnmarshalJSON(b []byte) error {
	type plain Publisher
	v := struct {
		*plain
		ID   flexString `json:"id"`
		Type flexString `json:"type"`
		Name flexString `json:"name"`
	}{plain: (*plain)(p)}
	if err := json.Unmarshal(b, &v); err != nil {
		return err
	}
	p.ID, p.Type, p.Name = string(v.ID), string(v.Type), string(v.Name)
	return nil
}

// UnmarshalJSON decodes a publisher status. Warnings that are plain
// strings are accepted; statistics are kept verbatim.
func (s *PublisherStatus) UnmarshalJSON(b []byte) error {
	type plain PublisherStatus
	v := struct {
		*plain
		IsConfigured  flexBool        `json:"is_configured"`
		Started       flexBool        `json:"started"`
		State         flexString      `json:"state"`
		Description   flexString      `json:"description"`
		Duration      flexInt         `json:"duration"`
		Since         flexInt         `json:"since"`
		Reconnections flexInt         `json:"reconnections"`
		Warnings      flexWarnings    `json:"warnings"`
		Statistics    json.RawMessage `json:"statistics"`
	}{plain: (*plain)(s)}
	if err := json.Unmarshal(b, &v); err != nil {
		return err
	}
	s.IsConfigured, s.Started = bool(v.IsConfigured), bool(v.Started)
	s.State, s.Description = PublisherState(v.State), string(v.Description)
	s.Duration, s.Since, s.Reconnections = int64(v.Duration), int64(v.Since), int64(v.Reconnections)
	s.Warnings = nil
	if len(v.Warnings) > 0 {
		s.Warnings = v.Warnings
	}
	s.Statistics = nil
	if string(v.Statistics) != "null" {
		s.Statistics = v.Statistics
	}
	return nil
}

// UnmarshalJSON decodes an encoder, accepting numbers as strings.
func (e *Encoder) UnmarshalJSON(b []byte) error {
	type plain Encoder
	v := struct {
		*plain
		ID        flexString `json:"id"`
		Framerate flexInt    `json:"framerate"`
		Bitrate   flexInt    `json:"bitrate"`
		Channels  flexInt    `json:"channels"`
	}{plain: (*plain)(e)}
	if err := json.Unmarshal(b, &v); err != nil {
		return err
	}
	e.ID = string(v.ID)
	e.Framerate, e.Bitrate, e.Channels = int(v.Framerate), int(v.Bitrate), int(v.Channels)
	return nil
}

// UnmarshalJSON decodes a system status; date may be an ISO-8601 string or
// an epoch number (seconds, or milliseconds when it is that large).
func (s *SystemStatus) UnmarshalJSON(b []byte) error {
	v := struct {
		Date             flexDate `json:"date"`
		Uptime           flexInt  `json:"uptime"`
		CPULoad          flexInt  `json:"cpuload"`
		CPULoadHigh      flexBool `json:"cpuload_high"`
		CPUTemp          flexInt  `json:"cputemp"`
		CPUTempThreshold flexInt  `json:"cputemp_threshold"`
	}{}
	if err := json.Unmarshal(b, &v); err != nil {
		return err
	}
	*s = SystemStatus{
		Date:             time.Time(v.Date),
		Uptime:           int64(v.Uptime),
		CPULoad:          int(v.CPULoad),
		CPULoadHigh:      bool(v.CPULoadHigh),
		CPUTemp:          int(v.CPUTemp),
		CPUTempThreshold: int(v.CPUTempThreshold),
	}
	return nil
}

// UnmarshalJSON decodes a firmware description, accepting a product id
// given as a string.
func (f *Firmware) UnmarshalJSON(b []byte) error {
	type plain Firmware
	v := struct {
		*plain
		Version   flexString `json:"version"`
		ProductID flexInt    `json:"product_id"`
	}{plain: (*plain)(f)}
	if err := json.Unmarshal(b, &v); err != nil {
		return err
	}
	f.Version, f.ProductID = string(v.Version), int(v.ProductID)
	return nil
}
