package websocket

import (
	"encoding/json"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/pearld/pearld/engine"
)

// handle answers one client message. Only the reader goroutine calls it.
func (c *client) handle(msg []byte) {
	var req request
	if err := json.Unmarshal(msg, &req); err != nil {
		c.fail(codeInvalidMessage, "message is not a JSON object with a string type", "")
		return
	}
	switch req.Type {
	case "subscribe":
		c.handleSubscribe(&req)
	case "unsubscribe":
		k, ok := c.key(&req, false)
		if !ok {
			return
		}
		if s := c.subs[k.key]; s != nil {
			c.h.unsubscribe(s)
		}
		c.enqueue(unsubscribedFrame(&k))
	case "get_cached_data":
		k, ok := c.key(&req, true)
		if !ok {
			return
		}
		var t *topic
		s := c.subs[k.key]
		if s != nil {
			t = s.t
		} else {
			t = c.h.topic(&k, false)
		}
		if t != nil {
			t.mu.Lock()
			defer t.mu.Unlock()
		}
		f := c.h.cachedFrame(t, &k, false)
		if s != nil && f.seq > s.floor {
			s.floor = f.seq // see subscription.floor
		}
		c.enqueue(f)
	case "list_streams":
		c.enqueue(jsonFrame(streamListMsg{Type: "stream_list", Streams: c.h.streams(c)}))
	case "ping":
		c.enqueue(pongFrame(req.Timestamp, time.Now()))
	case "":
		c.fail(codeInvalidMessage, "message has no type", "")
	default:
		c.fail(codeUnknownType, "unknown message type "+strconv.Quote(req.Type), "")
	}
}

// key parses and checks the key of a request, answering with an error
// frame when it is not acceptable. check adds the checks a read needs: a
// data type something produces, a device the token allows.
func (c *client) key(req *request, check bool) (subKey, bool) {
	k, err := parseKey(req)
	if err != nil {
		c.fail(codeInvalidParams, err.Error(), "")
		return k, false
	}
	if !check {
		return k, true
	}
	if !c.h.knownType(k.Type) {
		c.fail(codeInvalidParams, "unknown data type "+strconv.Quote(k.Type)+
			" (known: "+strings.Join(c.h.dataTypes(), ", ")+")", k.key)
		return k, false
	}
	if !c.claims.AllowsDevice(k.Device) {
		c.fail(codeForbidden, "device "+strconv.Quote(k.Device)+" is not allowed by your token", k.key)
		return k, false
	}
	return k, true
}

func (c *client) handleSubscribe(req *request) {
	k, ok := c.key(req, true)
	if !ok {
		return
	}
	r, err := parseResume(req)
	if err != nil {
		c.fail(codeInvalidParams, err.Error(), k.key)
		return
	}
	if c.subs[k.key] == nil && len(c.subs) >= c.h.MaxSubscriptions {
		c.fail(codeLimit, "subscription limit of "+strconv.Itoa(c.h.MaxSubscriptions)+" reached", k.key)
		return
	}
	c.h.subscribe(c, &k, r)
}

// anyDataType in the result of an upstream source's DataTypes means the
// source may emit any data type, such as the webhook source does: the hub
// then accepts subscriptions to every well-formed data type. A source that
// does not implement engine.DataTyper, or whose DataTypes returns nil,
// declares nothing and is treated the same way; an empty, non-nil result
// declares that the source emits no data type.
const anyDataType = engine.AnyDataType

// addUpstreamTypes makes the data types an upstream component declares
// subscribable. Only Init calls it.
func (h *Hub) addUpstreamTypes(u any) {
	dt, ok := u.(engine.DataTyper)
	if !ok {
		if _, ok := u.(engine.Source); ok {
			h.anyType = true
		}
		return
	}
	types := dt.DataTypes()
	if types == nil {
		h.anyType = true
	}
	for _, t := range types {
		if t == anyDataType {
			h.anyType = true
			continue
		}
		h.types[t] = true
	}
}

// knownType reports whether a data type may be subscribed to.
func (h *Hub) knownType(t string) bool {
	h.typesMu.RLock()
	defer h.typesMu.RUnlock()
	return h.anyType || h.types[t]
}

// dataTypes returns the subscribable data types, sorted.
func (h *Hub) dataTypes() []string {
	h.typesMu.RLock()
	defer h.typesMu.RUnlock()
	out := make([]string, 0, len(h.types))
	for t := range h.types {
		out = append(out, t)
	}
	slices.Sort(out)
	return out
}

// addType makes a data type seen in Write subscribable.
func (h *Hub) addType(t string) {
	h.typesMu.RLock()
	known := h.types[t]
	h.typesMu.RUnlock()
	if known {
		return
	}
	h.typesMu.Lock()
	h.types[t] = true
	h.typesMu.Unlock()
}
