package webhook

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/pearld/pearld/engine"
)

// wireEvent is one event as services post it (PROTOCOL.md, the webhook
// paragraph). Fields are kept raw so that ids may be strings or numbers
// and a field of the wrong kind is a clear 400, not a decoding error.
// Unknown fields are ignored.
type wireEvent struct {
	Type        json.RawMessage `json:"type"`
	Device      json.RawMessage `json:"device"`
	Channel     json.RawMessage `json:"channel"`
	PublisherID json.RawMessage `json:"publisherId"`
	Data        json.RawMessage `json:"data"`
	Timestamp   json.RawMessage `json:"timestamp"`
}

// parse turns a request body into events: one event object, or an array
// of 1 to max_events of them. Either every event is valid or none is
// taken. now is the Time of events without a timestamp.
func (s *Source) parse(body []byte, now time.Time) ([]engine.Event, *rejection) {
	if !json.Valid(body) {
		return nil, reject(http.StatusBadRequest, reasonMalformed, "the body is not valid JSON")
	}
	body = bytes.TrimSpace(body)
	switch body[0] {
	case '{':
		e, err := s.parseEvent(body, now)
		if err != nil {
			return nil, reject(http.StatusBadRequest, reasonInvalid, err.Error())
		}
		return []engine.Event{e}, nil
	case '[':
		var raws []json.RawMessage
		if err := json.Unmarshal(body, &raws); err != nil {
			return nil, reject(http.StatusBadRequest, reasonMalformed, "the body is not valid JSON")
		}
		if len(raws) == 0 {
			return nil, reject(http.StatusBadRequest, reasonInvalid, "the array holds no event")
		}
		if len(raws) > s.MaxEvents {
			return nil, reject(http.StatusRequestEntityTooLarge, reasonTooLarge,
				fmt.Sprintf("%d events in one request, at most %d are accepted", len(raws), s.MaxEvents))
		}
		events := make([]engine.Event, len(raws))
		for i, raw := range raws {
			var err error
			if events[i], err = s.parseEvent(raw, now); err != nil {
				return nil, reject(http.StatusBadRequest, reasonInvalid, fmt.Sprintf("events[%d]: %s", i, err))
			}
		}
		return events, nil
	default:
		return nil, reject(http.StatusBadRequest, reasonInvalid, "the body must be an event object or an array of them")
	}
}

// parseEvent validates one event object. Its Data is the posted data,
// compacted; its Hash covers those bytes, so dedup drops an exact repeat
// (the same data with the same key order) whatever its timestamp.
func (s *Source) parseEvent(raw json.RawMessage, now time.Time) (engine.Event, error) {
	var w wireEvent
	if err := json.Unmarshal(raw, &w); err != nil {
		return engine.Event{}, fmt.Errorf("want an event object")
	}
	var e engine.Event
	if err := json.Unmarshal(orNull(w.Type), &e.Type); err != nil || e.Type == "" {
		return e, fmt.Errorf("type: want a non-empty string")
	}
	if !dataTypePattern.MatchString(e.Type) {
		return e, fmt.Errorf("type %q: use 1-64 of A-Z a-z 0-9 . _ -", e.Type)
	}
	if s.types != nil && !s.types[e.Type] {
		return e, fmt.Errorf("type %q is not accepted here (data_types: %s)", e.Type, strings.Join(s.Types, ", "))
	}
	var err error
	if e.Device, err = idField(w.Device, "device"); err != nil {
		return e, err
	}
	if e.Device == "" {
		return e, fmt.Errorf("device: required")
	}
	if e.Channel, err = idField(w.Channel, "channel"); err != nil {
		return e, err
	}
	if e.Publisher, err = idField(w.PublisherID, "publisherId"); err != nil {
		return e, err
	}
	if len(w.Data) == 0 || w.Data[0] != '{' {
		return e, fmt.Errorf("data: want a JSON object")
	}
	var data bytes.Buffer
	data.Grow(len(w.Data))
	if err := json.Compact(&data, w.Data); err != nil {
		return e, fmt.Errorf("data: %w", err)
	}
	e.Data = data.Bytes()
	var h engine.Hasher
	h.Add(data.String())
	e.Hash = h.Sum()
	if e.Time, err = timestamp(w.Timestamp, now); err != nil {
		return e, err
	}
	return e, nil
}

// timestamp reads an ISO-8601 (RFC 3339) timestamp; absent or null gives
// now.
func timestamp(raw json.RawMessage, now time.Time) (time.Time, error) {
	if len(raw) == 0 || string(raw) == "null" {
		return now, nil
	}
	var s string
	if err := json.Unmarshal(raw, &s); err != nil {
		return time.Time{}, fmt.Errorf("timestamp: want an ISO-8601 string such as \"2026-11-25T20:31:12.345Z\"")
	}
	t, err := time.Parse(time.RFC3339Nano, s)
	if err != nil {
		return time.Time{}, fmt.Errorf("timestamp %q: want ISO-8601 such as \"2026-11-25T20:31:12.345Z\"", s)
	}
	return t, nil
}

// idField decodes an id sent as a JSON string or a non-negative integer,
// by the rules of the hub's subscription keys; absent, null and "" give
// "".
func idField(raw json.RawMessage, name string) (string, error) {
	if len(raw) == 0 || string(raw) == "null" {
		return "", nil
	}
	if raw[0] == '"' {
		var v string
		if err := json.Unmarshal(raw, &v); err != nil {
			return "", fmt.Errorf("%s: %w", name, err)
		}
		if v != "" && !idPattern.MatchString(v) {
			return "", fmt.Errorf("%s %q: use 1-64 of A-Z a-z 0-9 . _ : -", name, v)
		}
		return v, nil
	}
	n, err := strconv.ParseUint(string(raw), 10, 64)
	if err != nil {
		return "", fmt.Errorf("%s: want a string or a non-negative integer, got %s", name, raw)
	}
	return strconv.FormatUint(n, 10), nil
}

func orNull(raw json.RawMessage) json.RawMessage {
	if len(raw) == 0 {
		return json.RawMessage("null")
	}
	return raw
}
