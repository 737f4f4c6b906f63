package main

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"sync/atomic"
	"time"
)

// fanoutParams are the flags of the fanout scenario.
type fanoutParams struct {
	Clients   int     `json:"clients"`
	Events    int     `json:"events"`
	Rate      float64 `json:"rate"`   // events/s; 0: as fast as the clients keep up
	Window    int     `json:"window"` // with rate 0: events in flight at most
	Payload   int     `json:"payload_bytes"`
	PerIP     int     `json:"clients_per_ip"`
	Parallel  int     `json:"connect_parallel"`
	Warmup    int     `json:"warmup_events"`
	SendQueue int     `json:"send_queue"`
	Drain     Dur     `json:"drain"`
}

func fanoutFlags(fs *flag.FlagSet) func(context.Context, *common) error {
	p := &fanoutParams{}
	fs.IntVar(&p.Clients, "clients", 1000, "subscribers of the one key")
	fs.IntVar(&p.Events, "events", 2000, "events to publish")
	fs.Float64Var(&p.Rate, "rate", 100, "events per second; 0: unthrottled (at most -window events in flight)")
	fs.IntVar(&p.Window, "window", 32, "with -rate 0: events published but not yet delivered to every client, at most")
	fs.IntVar(&p.Payload, "payload", 100, "bytes of padding in each event's data")
	fs.IntVar(&p.PerIP, "per-ip", 20, "clients per source address (the hub allows 25 by default)")
	fs.IntVar(&p.Parallel, "parallel", 64, "connects in flight")
	fs.IntVar(&p.Warmup, "warmup", 20, "events published and delivered before measuring")
	fs.IntVar(&p.SendQueue, "send-queue", 0, "hub send_queue (0: the hub's default, 256)")
	durVar(fs, &p.Drain, "drain", 5*time.Second, "after the last event, wait this long without progress before counting the rest lost")
	return func(ctx context.Context, c *common) error {
		res, err := runFanout(ctx, c, *p)
		if err != nil {
			return err
		}
		return c.report(Result{Scenario: "fanout", Params: structParams(p), Results: res, Summary: res.summary(*p)})
	}
}

// FanoutResult is what the fanout scenario measured.
type FanoutResult struct {
	Connected        int            `json:"connected"`
	ConnectSeconds   float64        `json:"connect_seconds"`
	Published        int            `json:"published"`
	PublishRate      float64        `json:"publish_rate"` // events/s achieved
	Expected         uint64         `json:"expected"`
	Delivered        uint64         `json:"delivered"`
	DeliveredRatio   float64        `json:"delivered_ratio"`
	Seconds          float64        `json:"seconds"` // first publish to last delivery
	DeliveriesPerSec float64        `json:"deliveries_per_sec"`
	CPUPerDeliveryUS float64        `json:"cpu_per_delivery_us"` // server CPU time / deliveries
	CPU              CPUUse         `json:"cpu"`
	Latency          Latency        `json:"latency"`
	ClientsDropped   int            `json:"clients_dropped"`
	DropReasons      map[string]int `json:"drop_reasons,omitempty"`
	ServerRSSBytes   int64          `json:"server_rss_bytes"`
}

func (r *FanoutResult) summary(p fanoutParams) string {
	rate := "unthrottled"
	if p.Rate > 0 {
		rate = fmt.Sprintf("%g msg/s", p.Rate)
	}
	return fmt.Sprintf("%d clients, %s: %.0f deliveries/s, %.2f us CPU/delivery (server %.0f%% of a core, softirq %.0f%%), p50 %.1f ms p99 %.1f ms max %.1f ms, delivered %d/%d (%.4f), %d clients dropped, others on the machine %.0f%% of a CPU",
		r.Connected, rate, r.DeliveriesPerSec, r.CPUPerDeliveryUS, r.CPU.Server, r.CPU.SoftIRQ,
		r.Latency.P50, r.Latency.P99, r.Latency.Max, r.Delivered, r.Expected, r.DeliveredRatio, r.ClientsDropped, r.CPU.Others)
}

// receiver is one client of the fanout scenario.
type receiver struct {
	s         *session
	delivered atomic.Uint64 // measured deliveries
	warm      atomic.Uint64 // warm-up deliveries
	last      atomic.Int64  // Unix ns of the last measured delivery
	err       error         // why it stopped; set before done is closed
	done      chan struct{}
}

// fanoutKey is the key every fanout client subscribes to.
var fanoutKey = subKey{DataType: "bench", Device: "fanout"}

func runFanout(ctx context.Context, c *common, p fanoutParams) (*FanoutResult, error) {
	if p.Clients < 1 || p.Events < 1 {
		return nil, fmt.Errorf("-clients and -events must be at least 1")
	}
	if _, err := raiseNoFile(p.Clients + 256); err != nil {
		return nil, err
	}
	key := randomHex(16)
	spec := func(listen string) pipelineSpec {
		return pipelineSpec{Listen: listen, ServiceKey: key, SendQueue: p.SendQueue}
	}
	var res *FanoutResult
	err := c.withServer(ctx, spec, func(s *server) error {
		var err error
		res, err = fanout(ctx, c, s, key, p)
		return err
	})
	return res, err
}

func fanout(ctx context.Context, c *common, s *server, serviceKey string, p fanoutParams) (*FanoutResult, error) {
	res := &FanoutResult{DropReasons: map[string]int{}}
	tok, err := s.token("bench", authRead)
	if err != nil {
		return nil, err
	}
	c.progress("connecting %d clients ...", p.Clients)
	sessions, cr := connectMany(ctx, p.Clients, 0, p.Parallel, p.PerIP, 2,
		dialOptions{Addr: s.listen, Path: "/ws", Token: tok, ReadBuf: 16 << 10}, []subKey{fanoutKey})
	defer closeAll(sessions)
	res.Connected, res.ConnectSeconds = cr.Connected, cr.Took.Seconds()
	if cr.Failed > 0 {
		return nil, fmt.Errorf("%d of %d clients failed to connect: %v", cr.Failed, p.Clients, cr.Errors)
	}

	var measureFrom atomic.Int64 // Unix ns; deliveries of events stamped before are warm-up
	measureFrom.Store(1<<63 - 1)
	hist := &Histogram{}
	recv := make([]*receiver, len(sessions))
	for i, sess := range sessions {
		r := &receiver{s: sess, done: make(chan struct{})}
		recv[i] = r
		go r.run(hist, &measureFrom)
	}
	pub := newPublisher(s, serviceKey, p.Payload)
	defer pub.close()

	sum := func(f func(*receiver) uint64) uint64 {
		var n uint64
		for _, r := range recv {
			n += f(r)
		}
		return n
	}
	alive := func() int {
		n := 0
		for _, r := range recv {
			select {
			case <-r.done:
			default:
				n++
			}
		}
		return n
	}

	// Warm up: the first events allocate what the steady state reuses.
	for i := range p.Warmup {
		if err := pub.publish(ctx, -1-i); err != nil {
			return nil, err
		}
	}
	want := uint64(p.Warmup) * uint64(len(recv))
	if !waitFor(ctx, 10*time.Second, func() bool { return sum(func(r *receiver) uint64 { return r.warm.Load() }) >= want }) {
		return nil, fmt.Errorf("warm-up: %d of %d deliveries in 10s", sum(func(r *receiver) uint64 { return r.warm.Load() }), want)
	}

	c.progress("publishing %d events to %d clients ...", p.Events, len(recv))
	c.waitQuiet(ctx, s)
	finishProfile := c.profile(ctx, s, "fanout")
	meter, err := startCPUMeter(s.pid, c.pin)
	if err != nil {
		return nil, err
	}
	start := time.Now()
	measureFrom.Store(start.UnixNano())
	published := 0
	period := time.Duration(0)
	if p.Rate > 0 {
		period = time.Duration(float64(time.Second) / p.Rate)
	}
	n := uint64(len(recv))
publishing:
	for i := range p.Events {
		if ctx.Err() != nil {
			break
		}
		if period > 0 {
			if d := time.Until(start.Add(time.Duration(i) * period)); d > 0 {
				sleepCtx(ctx, d)
			}
		} else if i >= p.Window {
			// Closed loop: keep at most Window events in flight.
			// A dropped client lowers what can be waited for.
			var last uint64
			lastChange := time.Now()
			for {
				got := sum(func(r *receiver) uint64 { return r.delivered.Load() })
				if got >= uint64(i-p.Window)*uint64(alive()) {
					break
				}
				if got != last {
					last, lastChange = got, time.Now()
				}
				if time.Since(lastChange) > p.Drain.D() || ctx.Err() != nil {
					c.progress("no progress for %v: stopping at event %d", p.Drain, i)
					break publishing
				}
				time.Sleep(50 * time.Microsecond)
			}
		}
		if err := pub.publish(ctx, i); err != nil {
			return nil, err
		}
		published++
	}
	pubTook := time.Since(start)

	// Drain: wait for everything published, while something arrives.
	expected := uint64(published) * n
	lastCount, lastChange := uint64(0), time.Now()
	for {
		got := sum(func(r *receiver) uint64 { return r.delivered.Load() })
		if got >= expected || ctx.Err() != nil {
			break
		}
		if got != lastCount {
			lastCount, lastChange = got, time.Now()
		} else if time.Since(lastChange) > p.Drain.D() {
			break
		}
		time.Sleep(2 * time.Millisecond)
	}
	use, cpu, err := meter.stop()
	if err != nil {
		return nil, err
	}
	finishProfile()
	if st, err := readProcStatus(s.pid); err == nil {
		res.ServerRSSBytes = st.RSS
	}

	var lastNs int64
	for _, r := range recv {
		lastNs = max(lastNs, r.last.Load())
		select {
		case <-r.done:
			res.ClientsDropped++
			res.DropReasons[dropReason(r)]++
		default:
		}
	}
	window := time.Duration(lastNs - start.UnixNano())
	if window <= 0 {
		window = time.Since(start)
	}
	res.Published = published
	res.PublishRate = round(float64(published)/pubTook.Seconds(), 1)
	res.Expected = expected
	res.Delivered = sum(func(r *receiver) uint64 { return r.delivered.Load() })
	res.DeliveredRatio = round(float64(res.Delivered)/float64(max(expected, 1)), 6)
	res.Seconds = round(window.Seconds(), 3)
	res.DeliveriesPerSec = round(float64(res.Delivered)/window.Seconds(), 0)
	res.CPU = use
	if res.Delivered > 0 {
		res.CPUPerDeliveryUS = round(float64(cpu.Microseconds())/float64(res.Delivered), 3)
	}
	res.Latency = hist.Summary()
	if len(res.DropReasons) == 0 {
		res.DropReasons = nil
	}
	return res, s.alive()
}

// run reads frames until the connection ends, recording the latency of
// each data_update.
func (r *receiver) run(h *Histogram, measureFrom *atomic.Int64) {
	defer close(r.done)
	for {
		op, p, err := r.s.ws.readFrame()
		if err != nil {
			r.err = err
			return
		}
		if op != opText || !isDataUpdate(p) {
			continue
		}
		now := time.Now().UnixNano()
		t, ok := publishStamp(p)
		switch {
		case !ok:
		case t >= measureFrom.Load():
			h.Record(time.Duration(now - t))
			r.delivered.Add(1)
			r.last.Store(now)
		default:
			r.warm.Add(1)
		}
	}
}

func dropReason(r *receiver) string {
	if errors.Is(r.err, errClosed) {
		return fmt.Sprintf("closed %d %s", r.s.ws.closeCode, r.s.ws.closeReason)
	}
	if r.err == nil {
		return "unknown"
	}
	return errorClass(r.err)
}

// publisher posts events to the webhook, one request each, on one
// keep-alive connection.
type publisher struct {
	url, key string
	client   *http.Client
	pad      string
	buf      bytes.Buffer
}

func newPublisher(s *server, key string, payload int) *publisher {
	return &publisher{
		url:    "http://" + s.statusAddr + "/webhook/event",
		key:    key,
		client: &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{MaxIdleConnsPerHost: 4}},
		pad:    strings.Repeat("x", max(payload, 0)),
	}
}

// publish posts event i, stamped with the time now, and waits for the
// webhook to accept it.
func (p *publisher) publish(ctx context.Context, i int) error {
	p.buf.Reset()
	p.buf.WriteString(`{"type":"bench","device":"fanout","data":{"t":`)
	p.buf.WriteString(strconv.FormatInt(time.Now().UnixNano(), 10))
	p.buf.WriteString(`,"i":`)
	p.buf.WriteString(strconv.Itoa(i))
	p.buf.WriteString(`,"pad":"`)
	p.buf.WriteString(p.pad)
	p.buf.WriteString(`"}}`)
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, p.url, bytes.NewReader(p.buf.Bytes()))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("X-Service-Key", p.key)
	resp, err := p.client.Do(req)
	if err != nil {
		return fmt.Errorf("publishing event %d: %w", i, err)
	}
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
	resp.Body.Close()
	if resp.StatusCode/100 != 2 {
		return fmt.Errorf("publishing event %d: %s: %s", i, resp.Status, bytes.TrimSpace(body))
	}
	return nil
}

func (p *publisher) close() { p.client.CloseIdleConnections() }

// waitFor polls cond every few milliseconds until it holds (true) or
// limit passes (false).
func waitFor(ctx context.Context, limit time.Duration, cond func() bool) bool {
	deadline := time.Now().Add(limit)
	for !cond() {
		if time.Now().After(deadline) || ctx.Err() != nil {
			return false
		}
		time.Sleep(5 * time.Millisecond)
	}
	return true
}

// round rounds v to d decimals.
func round(v float64, d int) float64 {
	f, _ := strconv.ParseFloat(strconv.FormatFloat(v, 'f', d, 64), 64)
	return f
}
