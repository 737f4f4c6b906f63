package engine

import (
	"encoding/json"
	"fmt"
	"strings"
	"time"
)

// Event is one observed change of state, flowing from a source through
// processors to sinks. Events are values; a batch handed to a component is
// shared with other components and must be treated as read-only.
type Event struct {
	// Type is the data type, e.g. "publisher_status" or "device_health".
	Type string
	// Device is the device id: its name in the pipeline's [devices] table.
	Device string
	// Channel is the channel id, "" for device-level data.
	Channel string
	// Publisher is the publisher id, "" unless the data is per publisher.
	Publisher string
	// Time is when the source observed the state.
	Time time.Time
	// Data is the JSON payload described by the wire protocol.
	Data json.RawMessage
	// Hash covers the fields that define a change; the source sets it.
	// Two events of one key with the same Hash describe the same state.
	Hash uint64
	// Seq is assigned once by the engine when a source emits the event. It
	// only grows within one engine epoch.
	Seq uint64
}

// Key returns the subscription key dataType:device[:channel[:publisher]].
func (e Event) Key() string {
	return MakeKey(e.Type, e.Device, e.Channel, e.Publisher)
}

// MakeKey builds a subscription key from its parts. A publisher without a
// channel is kept in its place so that keys stay unambiguous.
func MakeKey(dataType, device, channel, publisher string) string {
	n := len(dataType) + 1 + len(device)
	if channel != "" || publisher != "" {
		n += 1 + len(channel)
	}
	if publisher != "" {
		n += 1 + len(publisher)
	}
	var b strings.Builder
	b.Grow(n)
	b.WriteString(dataType)
	b.WriteByte(':')
	b.WriteString(device)
	if channel != "" || publisher != "" {
		b.WriteByte(':')
		b.WriteString(channel)
	}
	if publisher != "" {
		b.WriteByte(':')
		b.WriteString(publisher)
	}
	return b.String()
}

// KeyParts is a parsed subscription key.
type KeyParts struct {
	Type, Device, Channel, Publisher string
}

// ParseKey splits a subscription key into its parts. Device ids may not
// contain ':' when written in a key with a channel; ParseKey therefore
// splits from the left on the first three separators after the type.
func ParseKey(key string) (KeyParts, error) {
	parts := strings.SplitN(key, ":", 4)
	if len(parts) < 2 || parts[0] == "" || parts[1] == "" {
		return KeyParts{}, fmt.Errorf("parsing key %q: want dataType:device[:channel[:publisher]]", key)
	}
	k := KeyParts{Type: parts[0], Device: parts[1]}
	if len(parts) > 2 {
		k.Channel = parts[2]
	}
	if len(parts) > 3 {
		k.Publisher = parts[3]
	}
	return k, nil
}

// Hasher builds an Event.Hash (64-bit FNV-1a) from the fields that define
// a change. The zero value is ready to use.
type Hasher struct {
	h   uint64
	set bool
}

const (
	fnvOffset = 14695981039346656037
	fnvPrime  = 1099511628211
)

func (h *Hasher) byte(b byte) {
	if !h.set {
		h.h = fnvOffset
		h.set = true
	}
	h.h ^= uint64(b)
	h.h *= fnvPrime
}

// Add mixes s into the hash. Each field is length-prefixed, so ("ab","c")
// and ("a","bc") hash differently.
func (h *Hasher) Add(s string) {
	n := len(s)
	h.byte(byte(n))
	h.byte(byte(n >> 8))
	h.byte(byte(n >> 16))
	for i := 0; i < len(s); i++ {
		h.byte(s[i])
	}
}

// AddBool mixes b into the hash.
func (h *Hasher) AddBool(b bool) {
	if b {
		h.Add("t")
	} else {
		h.Add("f")
	}
}

// Sum returns the hash of everything added so far.
func (h *Hasher) Sum() uint64 { return h.h }
