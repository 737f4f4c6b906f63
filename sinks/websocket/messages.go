package websocket

import (
	"encoding/json"
	"fmt"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/pearld/pearld/engine"
)

// Error codes of `error` frames (PROTOCOL.md).
const (
	codeInvalidMessage = "invalid_message" // not JSON, or no type
	codeTooLarge       = "too_large"       // over max_message_size
	codeUnknownType    = "unknown_type"    // a type the hub does not know
	codeInvalidParams  = "invalid_params"  // missing or malformed fields, unknown data type
	codeForbidden      = "forbidden"       // the token's devices claim refuses the device
	codeLimit          = "limit"           // max_subscriptions reached
)

// request is any client message. Key fields are kept raw so that a channel
// sent as a number and one sent as a string name the same key, and so that
// a malformed field is an invalid_params error rather than invalid JSON.
type request struct {
	Type        string          `json:"type"`
	DataType    json.RawMessage `json:"dataType"`
	Device      json.RawMessage `json:"device"`
	Channel     json.RawMessage `json:"channel"`
	PublisherID json.RawMessage `json:"publisherId"`
	Since       json.RawMessage `json:"since"`
	Epoch       json.RawMessage `json:"epoch"`
	Timestamp   json.RawMessage `json:"timestamp"`
}

// subKey is a parsed, validated subscription key.
type subKey struct {
	engine.KeyParts
	key string
}

var (
	idPattern       = regexp.MustCompile(`^[A-Za-z0-9._:-]{1,64}$`)
	dataTypePattern = regexp.MustCompile(`^[A-Za-z0-9._-]{1,64}$`)
)

// idField decodes an id sent as a JSON string or a non-negative integer;
// absent and null give "".
func idField(raw json.RawMessage, name string) (string, error) {
	s := strings.TrimSpace(string(raw))
	if s == "" || s == "null" {
		return "", nil
	}
	if s[0] == '"' {
		var v string
		if err := json.Unmarshal(raw, &v); err != nil {
			return "", fmt.Errorf("%s: %w", name, err)
		}
		if v == "" {
			return "", nil
		}
		if !idPattern.MatchString(v) {
			return "", fmt.Errorf("%s %q: use 1-64 of A-Z a-z 0-9 . _ : -", name, v)
		}
		return v, nil
	}
	n, err := strconv.ParseUint(s, 10, 64)
	if err != nil {
		return "", fmt.Errorf("%s: want a string or a non-negative integer, got %s", name, s)
	}
	return strconv.FormatUint(n, 10), nil
}

// parseKey validates the key fields of a subscribe, unsubscribe or
// get_cached_data request.
func parseKey(req *request) (subKey, error) {
	var k subKey
	var err error
	if err = json.Unmarshal(orNull(req.DataType), &k.Type); err != nil || k.Type == "" {
		return k, fmt.Errorf("dataType: want a non-empty string")
	}
	if !dataTypePattern.MatchString(k.Type) {
		return k, fmt.Errorf("dataType %q: use 1-64 of A-Z a-z 0-9 . _ -", k.Type)
	}
	if k.Device, err = idField(req.Device, "device"); err != nil {
		return k, err
	}
	if k.Device == "" {
		return k, fmt.Errorf("device: required")
	}
	if k.Channel, err = idField(req.Channel, "channel"); err != nil {
		return k, err
	}
	if k.Publisher, err = idField(req.PublisherID, "publisherId"); err != nil {
		return k, err
	}
	if err := checkKeyParts(k.Device, k.Channel); err != nil {
		return k, err
	}
	k.key = engine.MakeKey(k.Type, k.Device, k.Channel, k.Publisher)
	return k, nil
}

// checkKeyParts refuses a device or channel id holding ':', the separator
// of a key's parts: with it, two different (device, channel, publisher)
// triples make the same key - device "10.0.0.5" channel "80" publisher "1"
// and device "10.0.0.5:80" channel "1" both make
// publisher_status:10.0.0.5:80:1 - and a token allowed one device would
// get another's events. A publisher id is the key's last part and may
// hold ':'.
func checkKeyParts(device, channel string) error {
	switch {
	case strings.IndexByte(device, ':') >= 0:
		return fmt.Errorf("device %q: ':' separates the parts of a key and cannot be in a device id", device)
	case strings.IndexByte(channel, ':') >= 0:
		return fmt.Errorf("channel %q: ':' separates the parts of a key and cannot be in a channel id", channel)
	}
	return nil
}

func orNull(raw json.RawMessage) json.RawMessage {
	if len(raw) == 0 {
		return json.RawMessage("null")
	}
	return raw
}

// resume is what a subscribe with `since` asks for.
type resume struct {
	since    uint64
	epoch    int64
	hasEpoch bool
}

// parseResume reads `since` (a seq, as a number or a numeric string) and
// the optional `epoch`. It returns nil when since is absent.
func parseResume(req *request) (*resume, error) {
	s := strings.Trim(strings.TrimSpace(string(req.Since)), `"`)
	if s == "" || s == "null" {
		return nil, nil
	}
	since, err := strconv.ParseUint(s, 10, 64)
	if err != nil {
		return nil, fmt.Errorf("since: want a seq number, got %s", req.Since)
	}
	r := &resume{since: since}
	if e := strings.Trim(strings.TrimSpace(string(req.Epoch)), `"`); e != "" && e != "null" {
		if r.epoch, err = strconv.ParseInt(e, 10, 64); err != nil {
			return nil, fmt.Errorf("epoch: want a number, got %s", req.Epoch)
		}
		r.hasEpoch = true
	}
	return r, nil
}

// Server messages other than events. Field order is the wire order.

type keyFields struct {
	SubscriptionKey string  `json:"subscriptionKey"`
	DataType        string  `json:"dataType"`
	Device          string  `json:"device"`
	Channel         *string `json:"channel"`
	PublisherID     *string `json:"publisherId"`
}

func (k *subKey) fields() keyFields {
	f := keyFields{SubscriptionKey: k.key, DataType: k.Type, Device: k.Device}
	if k.Channel != "" {
		f.Channel = &k.Channel
	}
	if k.Publisher != "" {
		f.PublisherID = &k.Publisher
	}
	return f
}

type keyMsg struct {
	Type string `json:"type"`
	keyFields
}

type noCachedMsg struct {
	Type            string `json:"type"`
	SubscriptionKey string `json:"subscriptionKey"`
	Message         string `json:"message"`
}

type errorMsg struct {
	Type            string `json:"type"`
	Code            string `json:"code"`
	Message         string `json:"message"`
	SubscriptionKey string `json:"subscriptionKey,omitempty"`
}

type pongMsg struct {
	Type      string          `json:"type"`
	Timestamp json.RawMessage `json:"timestamp"`
}

type streamInfo struct {
	Subscribers int `json:"subscribers"`
}

type streamListMsg struct {
	Type    string                `json:"type"`
	Streams map[string]streamInfo `json:"streams"`
}

type userInfo struct {
	ID          string          `json:"id"`
	Name        string          `json:"name"`
	Email       string          `json:"email"`
	Permissions json.RawMessage `json:"permissions"`
}

type capabilities struct {
	DataTypes        []string `json:"dataTypes"`
	MaxSubscriptions int      `json:"maxSubscriptions"`
	MaxMessageSize   int      `json:"maxMessageSize"`
	Version          string   `json:"version"`
	Epoch            int64    `json:"epoch"`
}

type connectedMsg struct {
	Type         string       `json:"type"`
	ClientID     string       `json:"clientId"`
	User         userInfo     `json:"user"`
	Capabilities capabilities `json:"capabilities"`
}

func subscribedFrame(k *subKey) *frame {
	return jsonFrame(keyMsg{Type: "subscribed", keyFields: k.fields()})
}

func unsubscribedFrame(k *subKey) *frame {
	return jsonFrame(keyMsg{Type: "unsubscribed", keyFields: k.fields()})
}

func noCachedFrame(key string) *frame {
	return jsonFrame(noCachedMsg{Type: "no_cached_data", SubscriptionKey: key, Message: "No cached data available for " + key})
}

func errorFrame(code, msg, key string) *frame {
	return jsonFrame(errorMsg{Type: "error", Code: code, Message: msg, SubscriptionKey: key})
}

func pongFrame(ts json.RawMessage, now time.Time) *frame {
	if len(ts) == 0 || string(ts) == "null" {
		ts = strconv.AppendQuote(nil, isoTime(now))
	}
	return jsonFrame(pongMsg{Type: "pong", Timestamp: ts})
}
