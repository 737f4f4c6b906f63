package chaos

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"hash/fnv"
	"math/rand/v2"
	"net/http"
	"slices"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/gorilla/websocket"
)

// key is a subscription key and its parts.
type key struct {
	key, dataType, device, channel string
}

func newKey(dataType, device, channel string) key {
	k := key{dataType: dataType, device: device, channel: channel, key: dataType + ":" + device}
	if channel != "" {
		k.key += ":" + channel
	}
	return k
}

// Kinds of observation.
const (
	obsCached      = 'c' // cached_data: the latest state on subscribing
	obsUnrecovered = 'r' // cached_data with recovered:false: a resume that could not be served
	obsNone        = 'n' // no_cached_data
	obsUpdate      = 'u' // data_update, alone or in a batch frame
)

// obs is one frame of a key as a client received it.
type obs struct {
	seq  uint64
	kind byte
	hash uint64 // of the data
	conn int    // which connection of the client
}

// wsClient is a dashboard: it connects, subscribes to its keys and
// records every frame of them. A chaos client reconnects when its
// connection ends and resumes each key with since; an observer never
// reconnects.
type wsClient struct {
	name      string
	url       string
	header    http.Header
	keys      []key
	reconnect bool
	allow     func(device string) bool // the devices its token allows; nil: all
	// onUpdate, if set, is called for every data_update as it is read.
	onUpdate func(k string, data json.RawMessage, at time.Time)

	mu        sync.Mutex
	conn      *websocket.Conn
	ready     bool // subscribed to every key on the current connection
	epoch     int64
	pos       map[string]uint64 // highest seq seen per key
	log       map[string][]obs
	problems  []string // protocol violations, unexpected errors
	connects  int
	resumes   int // subscriptions with since
	closes    map[int]int
	dialFails int
}

func newClient(name, url string, header http.Header, keys []key, reconnect bool) *wsClient {
	return &wsClient{name: name, url: url, header: header, keys: keys, reconnect: reconnect,
		pos: map[string]uint64{}, log: map[string][]obs{}, closes: map[int]int{}}
}

func (c *wsClient) problem(format string, args ...any) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if len(c.problems) < 20 {
		c.problems = append(c.problems, fmt.Sprintf(format, args...))
	}
}

// run connects and reads until ctx ends (or, for an observer, until its
// connection ends). rng picks the reconnection delays.
func (c *wsClient) run(ctx context.Context, rng *rand.Rand) {
	dialer := websocket.Dialer{HandshakeTimeout: 10 * time.Second}
	for n := 0; ctx.Err() == nil; n++ {
		conn, resp, err := dialer.DialContext(ctx, c.url, c.header)
		if resp != nil && resp.Body != nil {
			resp.Body.Close()
		}
		if err != nil {
			if ctx.Err() != nil {
				return
			}
			c.mu.Lock()
			c.dialFails++
			c.mu.Unlock()
			if !c.reconnect {
				c.problem("dialing: %v", err)
				return
			}
			sleepCtx(ctx, 50*time.Millisecond)
			continue
		}
		c.mu.Lock()
		c.conn, c.ready = conn, false
		c.connects++
		c.mu.Unlock()
		err = c.serve(ctx, conn, n)
		conn.Close()
		c.mu.Lock()
		c.conn, c.ready = nil, false
		if ce := (*websocket.CloseError)(nil); errors.As(err, &ce) {
			c.closes[ce.Code]++
		}
		c.mu.Unlock()
		if ctx.Err() != nil {
			return
		}
		if !c.reconnect {
			c.problem("observer lost its connection: %v", err)
			return
		}
		sleepCtx(ctx, time.Duration(rng.IntN(150))*time.Millisecond)
	}
}

func sleepCtx(ctx context.Context, d time.Duration) {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
	case <-t.C:
	}
}

// frame is the union of the server messages the clients read.
type frame struct {
	Type            string            `json:"type"`
	SubscriptionKey string            `json:"subscriptionKey"`
	Device          string            `json:"device"`
	Data            json.RawMessage   `json:"data"`
	Seq             uint64            `json:"seq"`
	Recovered       *bool             `json:"recovered"`
	Events          []json.RawMessage `json:"events"`
	Code            string            `json:"code"`
	Message         string            `json:"message"`
	Capabilities    struct {
		Epoch int64 `json:"epoch"`
	} `json:"capabilities"`
}

// serve runs one connection: it subscribes (resuming where it left off)
// and records frames until the connection ends.
func (c *wsClient) serve(ctx context.Context, conn *websocket.Conn, n int) error {
	var f frame
	_ = conn.SetReadDeadline(time.Now().Add(10 * time.Second))
	if err := conn.ReadJSON(&f); err != nil {
		return err
	}
	if f.Type != "connected" {
		c.problem("first frame %q, want connected", f.Type)
		return errors.New("no connected frame")
	}
	c.mu.Lock()
	if c.epoch != 0 && c.epoch != f.Capabilities.Epoch {
		c.problems = append(c.problems, fmt.Sprintf("epoch changed from %d to %d", c.epoch, f.Capabilities.Epoch))
	}
	c.epoch = f.Capabilities.Epoch
	subs := make([]map[string]any, 0, len(c.keys))
	for _, k := range c.keys {
		m := map[string]any{"type": "subscribe", "dataType": k.dataType, "device": k.device}
		if k.channel != "" {
			m["channel"] = k.channel
		}
		if p := c.pos[k.key]; p > 0 {
			m["since"], m["epoch"] = p, c.epoch
			c.resumes++
		}
		subs = append(subs, m)
	}
	c.mu.Unlock()
	for _, m := range subs {
		if err := conn.WriteJSON(m); err != nil {
			return err
		}
	}
	subscribed := 0
	for {
		// Pings keep the hub talking; a minute of silence is a failure.
		_ = conn.SetReadDeadline(time.Now().Add(time.Minute))
		_, b, err := conn.ReadMessage()
		if err != nil {
			return err
		}
		at := time.Now()
		if err := json.Unmarshal(b, &f); err != nil {
			c.problem("frame %q: %v", b, err)
			continue
		}
		switch f.Type {
		case "subscribed":
			if subscribed++; subscribed == len(c.keys) {
				c.mu.Lock()
				c.ready = true
				c.mu.Unlock()
			}
		case "cached_data", "no_cached_data", "data_update":
			c.record(&f, n, at)
		case "batch":
			for _, ev := range f.Events {
				var e frame
				if err := json.Unmarshal(ev, &e); err != nil || e.Type != "data_update" {
					c.problem("batch event %s: %v", ev, err)
					continue
				}
				c.record(&e, n, at)
			}
		case "pong":
		default:
			c.problem("unexpected frame %s", b)
		}
		f = frame{}
	}
}

// record notes a frame of a key.
func (c *wsClient) record(f *frame, conn int, at time.Time) {
	o := obs{seq: f.Seq, conn: conn}
	switch {
	case f.Type == "no_cached_data":
		o.kind = obsNone
	case f.Type == "data_update":
		o.kind = obsUpdate
	case f.Recovered != nil && !*f.Recovered:
		o.kind = obsUnrecovered
	default:
		o.kind = obsCached
	}
	if o.kind != obsNone {
		h := fnv.New64a()
		h.Write(f.Data)
		o.hash = h.Sum64()
		if c.allow != nil && !c.allow(f.Device) {
			c.problem("%s of device %q, which the token does not allow", f.Type, f.Device)
		}
	}
	c.mu.Lock()
	c.log[f.SubscriptionKey] = append(c.log[f.SubscriptionKey], o)
	if o.seq > c.pos[f.SubscriptionKey] {
		c.pos[f.SubscriptionKey] = o.seq
	}
	c.mu.Unlock()
	if o.kind == obsUpdate && c.onUpdate != nil {
		c.onUpdate(f.SubscriptionKey, f.Data, at)
	}
}

// kick ends the client's connection: abruptly (the TCP connection just
// closes) or with a close frame. It reports whether there was one.
func (c *wsClient) kick(abrupt bool) bool {
	c.mu.Lock()
	conn := c.conn
	c.mu.Unlock()
	if conn == nil {
		return false
	}
	if abrupt {
		_ = conn.NetConn().Close()
		return true
	}
	msg := websocket.FormatCloseMessage(websocket.CloseNormalClosure, "bye")
	if conn.WriteControl(websocket.CloseMessage, msg, time.Now().Add(time.Second)) != nil {
		_ = conn.NetConn().Close()
	}
	return true
}

// caughtUp reports whether the client is connected, subscribed, and has
// seen at least seq want[k] of each of its keys.
func (c *wsClient) caughtUp(want map[string]uint64) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	if !c.ready {
		return false
	}
	for _, k := range c.keys {
		if c.pos[k.key] < want[k.key] {
			return false
		}
	}
	return true
}

// history is the server's sequence of events of one key, as an observer
// that never disconnected saw it.
type history struct {
	seqs []uint64          // data_update seqs, ascending
	hash map[uint64]uint64 // seq -> data hash
}

// histories builds the histories of an observer, checking that they are
// sound: strictly growing data_update seqs, none at or below the cached
// state it started from.
func histories(o *wsClient) (map[string]*history, []string) {
	o.mu.Lock()
	defer o.mu.Unlock()
	var problems []string
	out := map[string]*history{}
	for k, log := range o.log {
		h := &history{hash: map[uint64]uint64{}}
		floor := uint64(0)
		for _, e := range log {
			switch e.kind {
			case obsCached:
				floor = e.seq
				h.hash[e.seq] = e.hash
			case obsUpdate:
				if e.seq <= floor {
					problems = append(problems, fmt.Sprintf("%s: observer %s got data_update seq %d after seq %d", k, o.name, e.seq, floor))
					continue
				}
				floor = e.seq
				h.seqs = append(h.seqs, e.seq)
				h.hash[e.seq] = e.hash
			case obsUnrecovered:
				problems = append(problems, fmt.Sprintf("%s: observer %s got an unrecovered cached_data", k, o.name))
			}
		}
		out[k] = h
	}
	return out, problems
}

// next returns the first seq of h above seq, and whether there is one.
func (h *history) next(seq uint64) (uint64, bool) {
	i := sort.Search(len(h.seqs), func(i int) bool { return h.seqs[i] > seq })
	if i == len(h.seqs) {
		return 0, false
	}
	return h.seqs[i], true
}

// checkClient compares what a client saw of each key with the server's
// history: from the state it first got, every later change exactly once,
// in order, with the server's data - across its reconnections, whose
// resumes with since must fill every gap - up to at least end[key].
func checkClient(c *wsClient, hist map[string]*history, end map[string]uint64) []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	problems := slices.Clone(c.problems)
	bad := func(format string, args ...any) {
		if len(problems) < 10 {
			problems = append(problems, c.name+": "+fmt.Sprintf(format, args...))
		}
	}
	for _, k := range c.keys {
		h := hist[k.key]
		if h == nil {
			bad("%s: no history", k.key)
			continue
		}
		pos := uint64(0)
		for i, e := range c.log[k.key] {
			switch e.kind {
			case obsNone:
				if pos != 0 {
					bad("%s: no_cached_data after seq %d", k.key, pos)
				}
			case obsUnrecovered:
				bad("%s: resume after seq %d on connection %d was not recovered (cached seq %d)", k.key, pos, e.conn, e.seq)
				pos = max(pos, e.seq)
			case obsCached:
				if pos != 0 {
					bad("%s: cached_data seq %d on connection %d after seq %d: a resume must replay, not restart", k.key, e.seq, e.conn, pos)
				}
				if want, ok := h.hash[e.seq]; ok && want != e.hash {
					bad("%s: cached_data seq %d has other data than the server's", k.key, e.seq)
				}
				pos = max(pos, e.seq)
			case obsUpdate:
				if e.seq <= pos {
					bad("%s: data_update seq %d (frame %d, connection %d) after seq %d: duplicate or out of order", k.key, e.seq, i, e.conn, pos)
					continue
				}
				if want, ok := h.next(pos); pos != 0 && (!ok || want != e.seq) {
					bad("%s: data_update seq %d after seq %d (connection %d), but the server's next was %d: a change was missed", k.key, e.seq, pos, e.conn, want)
				}
				if want, ok := h.hash[e.seq]; !ok {
					bad("%s: data_update seq %d unknown to the server's history", k.key, e.seq)
				} else if want != e.hash {
					bad("%s: data_update seq %d has other data than the server's", k.key, e.seq)
				}
				pos = e.seq
			}
		}
		if pos < end[k.key] {
			bad("%s: ended at seq %d, the server at %d", k.key, pos, end[k.key])
		}
	}
	return problems
}

// summary describes the clients' experience for the test log.
func summary(cs []*wsClient) string {
	var connects, resumes, dialFails, frames int
	closes := map[int]int{}
	for _, c := range cs {
		c.mu.Lock()
		connects += c.connects
		resumes += c.resumes
		dialFails += c.dialFails
		for _, l := range c.log {
			frames += len(l)
		}
		for code, n := range c.closes {
			closes[code] += n
		}
		c.mu.Unlock()
	}
	var cl []string
	for code, n := range closes {
		cl = append(cl, fmt.Sprintf("%d:%d", code, n))
	}
	slices.Sort(cl)
	return fmt.Sprintf("%d clients, %d connections, %d resumed subscriptions, %d failed dials, %d key frames, server closes %s",
		len(cs), connects, resumes, dialFails, frames, strings.Join(cl, " "))
}
