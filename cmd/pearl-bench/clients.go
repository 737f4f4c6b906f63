package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"
)

// clientAddr returns the source address of client i when at most perIP
// clients share an address: 127.10.x.y, y in 1..254, never the server's
// 127.0.0.1.
func clientAddr(i, perIP int) netip.Addr {
	k := i / max(perIP, 1)
	return netip.AddrFrom4([4]byte{127, byte(10 + k/(254*256)), byte(k / 254 % 256), byte(1 + k%254)})
}

// subKey is what a client subscribes to.
type subKey struct {
	DataType string `json:"dataType"`
	Device   string `json:"device"`
	Channel  string `json:"channel,omitempty"`
}

func (k subKey) message() string {
	b, _ := json.Marshal(struct {
		Type string `json:"type"`
		subKey
	}{"subscribe", k})
	return string(b)
}

// frameType returns the "type" of a hub frame without decoding it: every
// hub frame starts with {"type":"...".
func frameType(p []byte) string {
	const prefix = `{"type":"`
	if !bytes.HasPrefix(p, []byte(prefix)) {
		return ""
	}
	rest := p[len(prefix):]
	if i := bytes.IndexByte(rest, '"'); i >= 0 {
		return string(rest[:i])
	}
	return ""
}

// isDataUpdate reports whether p is a data_update frame, without
// allocating.
func isDataUpdate(p []byte) bool { return bytes.HasPrefix(p, []byte(`{"type":"data_update"`)) }

// stampMarker precedes the publish time (Unix ns) that the fanout events
// carry first in their data.
var stampMarker = []byte(`"data":{"t":`)

// publishStamp returns the publish time carried in a data_update frame.
func publishStamp(p []byte) (int64, bool) {
	i := bytes.Index(p, stampMarker)
	if i < 0 {
		return 0, false
	}
	var v uint64
	n := 0
	for _, c := range p[i+len(stampMarker):] {
		if c < '0' || c > '9' || n == 19 {
			break
		}
		v = v*10 + uint64(c-'0')
		n++
	}
	return int64(v), n > 0 && v <= 1<<63-1
}

// session is a connected, subscribed client.
type session struct {
	ws *wsConn
}

// connectSubscribe dials, waits for `connected`, subscribes to keys and
// waits for each subscription's answer (subscribed, then cached_data or
// no_cached_data), all within o.Timeout.
func connectSubscribe(ctx context.Context, o dialOptions, keys []subKey) (*session, error) {
	ws, err := dialWS(ctx, o)
	if err != nil {
		return nil, err
	}
	fail := func(err error) (*session, error) {
		ws.close()
		return nil, err
	}
	timeout := o.Timeout
	if timeout <= 0 {
		timeout = 10 * time.Second
	}
	_ = ws.nc.SetReadDeadline(time.Now().Add(timeout))
	defer ws.nc.SetReadDeadline(time.Time{})
	op, p, err := ws.readFrame()
	if err != nil {
		if errors.Is(err, errClosed) {
			return fail(fmt.Errorf("refused: %d %s", ws.closeCode, ws.closeReason))
		}
		return fail(fmt.Errorf("reading connected: %w", err))
	}
	if op != opText || frameType(p) != "connected" {
		return fail(fmt.Errorf("first frame is %q, not connected", frameType(p)))
	}
	for _, k := range keys {
		if err := ws.writeText(k.message()); err != nil {
			return fail(fmt.Errorf("subscribing: %w", err))
		}
	}
	for answered := 0; answered < len(keys); {
		_, p, err := ws.readFrame()
		if err != nil {
			return fail(fmt.Errorf("waiting for subscriptions: %w", err))
		}
		switch t := frameType(p); t {
		case "subscribed", "data_update":
		case "cached_data", "no_cached_data":
			answered++
		case "error":
			return fail(fmt.Errorf("subscribing: %s", p))
		default:
			return fail(fmt.Errorf("subscribing: unexpected %q frame", t))
		}
	}
	return &session{ws: ws}, nil
}

// connectResult is what connecting many clients measured.
type connectResult struct {
	Connected int
	Failed    int
	Retries   int
	Errors    map[string]int
	Took      time.Duration
	Latency   *Histogram // per client, dial to last subscription answer
}

// connectMany connects n clients, at most parallel at once, client i
// from clientAddr(first+i, perIP). A failed client is retried up to
// retries times after a short pause. It returns when all are done or ctx
// ends.
func connectMany(ctx context.Context, n, first, parallel, perIP, retries int, base dialOptions, keys []subKey) ([]*session, connectResult) {
	res := connectResult{Errors: map[string]int{}, Latency: &Histogram{}}
	sessions := make([]*session, n)
	var mu sync.Mutex
	var next atomic.Int64
	var wg sync.WaitGroup
	start := time.Now()
	for range min(max(parallel, 1), n) {
		wg.Go(func() {
			for {
				i := int(next.Add(1) - 1)
				if i >= n || ctx.Err() != nil {
					return
				}
				o := base
				o.Local = clientAddr(first+i, perIP)
				t0 := time.Now()
				var s *session
				var err error
				attempts := 0
				for attempt := 0; attempt <= retries && ctx.Err() == nil; attempt++ {
					if attempt > 0 {
						sleepCtx(ctx, time.Duration(50*attempt)*time.Millisecond)
					}
					attempts++
					if s, err = connectSubscribe(ctx, o, keys); err == nil {
						break
					}
				}
				mu.Lock()
				res.Retries += max(attempts-1, 0)
				if err != nil {
					res.Failed++
					res.Errors[errorClass(err)]++
				} else {
					res.Connected++
					sessions[i] = s
					res.Latency.Record(time.Since(t0))
				}
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	res.Took = time.Since(start)
	out := sessions[:0]
	for _, s := range sessions {
		if s != nil {
			out = append(out, s)
		}
	}
	return out, res
}

// errorClass shortens an error to a label: its text without addresses.
func errorClass(err error) string {
	s := err.Error()
	for _, cut := range []string{"dial tcp ", "read tcp ", "write tcp "} {
		if i := bytes.Index([]byte(s), []byte(cut)); i >= 0 {
			if j := bytes.LastIndex([]byte(s), []byte(": ")); j > i {
				return s[:i] + s[j+2:]
			}
		}
	}
	return s
}

// closeAll closes every session without a close handshake, as a crashed
// browser or a dropped network would.
func closeAll(sessions []*session) {
	for _, s := range sessions {
		if s != nil {
			_ = s.ws.close()
		}
	}
}

// sleepCtx sleeps for d or until ctx ends.
func sleepCtx(ctx context.Context, d time.Duration) {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
	case <-t.C:
	}
}
