package main

import (
	"context"
	"flag"
	"fmt"
	"strconv"
	"strings"
	"time"
)

// idleParams are the flags of the idle scenario.
type idleParams struct {
	Counts   []int `json:"connections"`
	Keys     int   `json:"keys"`
	PerIP    int   `json:"clients_per_ip"`
	Parallel int   `json:"connect_parallel"`
	Settle   Dur   `json:"settle"`
}

func idleFlags(fs *flag.FlagSet) func(context.Context, *common) error {
	p := &idleParams{}
	counts := fs.String("conns", "1000,10000", "comma-separated connection counts; a fresh server for each")
	fs.IntVar(&p.Keys, "keys", 10, "each client subscribes to one of this many keys")
	fs.IntVar(&p.PerIP, "per-ip", 20, "clients per source address")
	fs.IntVar(&p.Parallel, "parallel", 64, "connects in flight")
	durVar(fs, &p.Settle, "settle", 3*time.Second, "wait after the last connect before measuring")
	return func(ctx context.Context, c *common) error {
		for _, f := range strings.Split(*counts, ",") {
			n, err := strconv.Atoi(strings.TrimSpace(f))
			if err != nil || n < 1 {
				return fmt.Errorf("-conns: %q is not a positive count", f)
			}
			p.Counts = append(p.Counts, n)
		}
		res, err := runIdle(ctx, c, *p)
		if err != nil {
			return err
		}
		var parts []string
		for _, r := range res {
			parts = append(parts, r.summary())
		}
		return c.report(Result{Scenario: "idle", Params: structParams(p), Results: res, Summary: strings.Join(parts, "; ")})
	}
}

// IdleResult is the memory one count of idle connections costs.
type IdleResult struct {
	Connections    int     `json:"connections"`
	ConnectSeconds float64 `json:"connect_seconds"`
	RSSBefore      int64   `json:"rss_before_bytes"`
	RSSAfter       int64   `json:"rss_after_bytes"`
	RSSPerConn     float64 `json:"rss_per_conn_bytes"`
	// Go runtime figures from /metrics: heap in use (live and not yet
	// collected), goroutine stacks, and everything the runtime holds.
	HeapInusePerConn  float64 `json:"heap_inuse_per_conn_bytes"`
	StackPerConn      float64 `json:"stack_per_conn_bytes"`
	GoSysPerConn      float64 `json:"go_sys_per_conn_bytes"`
	GoroutinesPerConn float64 `json:"goroutines_per_conn"`
	// LiveHeapPerConn is the heap after a forced GC (needs pprof), -1
	// when unavailable.
	LiveHeapPerConn float64 `json:"live_heap_per_conn_bytes"`
}

func (r IdleResult) summary() string {
	s := fmt.Sprintf("%d conns: RSS %.1f KB/conn, heap in use %.1f KB/conn, stacks %.1f KB/conn, %.1f goroutines/conn",
		r.Connections, r.RSSPerConn/1024, r.HeapInusePerConn/1024, r.StackPerConn/1024, r.GoroutinesPerConn)
	if r.LiveHeapPerConn >= 0 {
		s += fmt.Sprintf(", live heap %.1f KB/conn", r.LiveHeapPerConn/1024)
	}
	return s
}

func runIdle(ctx context.Context, c *common, p idleParams) ([]IdleResult, error) {
	maxN := 0
	for _, n := range p.Counts {
		maxN = max(maxN, n)
	}
	if _, err := raiseNoFile(maxN + 256); err != nil {
		return nil, err
	}
	var out []IdleResult
	for _, n := range p.Counts {
		key := randomHex(16)
		spec := func(listen string) pipelineSpec { return pipelineSpec{Listen: listen, ServiceKey: key} }
		err := c.withServer(ctx, spec, func(s *server) error {
			r, err := idle(ctx, c, s, n, p)
			if err == nil {
				out = append(out, r)
			}
			return err
		})
		if err != nil {
			return nil, err
		}
	}
	return out, nil
}

// memSnapshot is the server's memory at one moment.
type memSnapshot struct {
	rss, heapInuse, stack, sys, goroutines, live float64
	hasLive                                      bool
}

func snapshot(ctx context.Context, s *server) (memSnapshot, error) {
	var m memSnapshot
	// A forced GC first, when pprof allows, so that the heap figures are
	// not inflated by garbage of the connects.
	if live, ok := s.liveHeap(ctx); ok {
		m.live, m.hasLive = float64(live), true
	}
	st, err := readProcStatus(s.pid)
	if err != nil {
		return m, err
	}
	met, err := s.metrics(ctx)
	if err != nil {
		return m, err
	}
	m.rss = float64(st.RSS)
	m.heapInuse = met["go_memstats_heap_inuse_bytes"]
	m.stack = met["go_memstats_stack_inuse_bytes"]
	m.sys = met["go_memstats_sys_bytes"]
	m.goroutines = met["go_goroutines"]
	return m, nil
}

func idle(ctx context.Context, c *common, s *server, n int, p idleParams) (IdleResult, error) {
	r := IdleResult{Connections: n, LiveHeapPerConn: -1}
	tok, err := s.token("bench", authRead)
	if err != nil {
		return r, err
	}
	// One connection and back first, so that one-time allocations (the
	// TLS-free HTTP server, the hub's pools) are in the baseline.
	warm, cr := connectMany(ctx, 1, n, 1, p.PerIP, 2, dialOptions{Addr: s.listen, Path: "/ws", Token: tok}, []subKey{{DataType: "bench", Device: "idle-0"}})
	if cr.Failed > 0 {
		return r, fmt.Errorf("warm-up connection failed: %v", cr.Errors)
	}
	for _, w := range warm {
		w.ws.closeGracefully()
	}
	sleepCtx(ctx, 500*time.Millisecond)
	before, err := snapshot(ctx, s)
	if err != nil {
		return r, err
	}
	c.progress("connecting %d idle clients ...", n)
	sessions := make([]*session, 0, n)
	defer func() { closeAll(sessions) }()
	// Clients subscribe to keys in turn; a group per key.
	per := (n + p.Keys - 1) / max(p.Keys, 1)
	var took time.Duration
	for k := 0; k < p.Keys && len(sessions) < n; k++ {
		m := min(per, n-len(sessions))
		ss, cr := connectMany(ctx, m, len(sessions), p.Parallel, p.PerIP, 2,
			dialOptions{Addr: s.listen, Path: "/ws", Token: tok, ReadBuf: 1024}, []subKey{{DataType: "bench", Device: "idle-" + strconv.Itoa(k)}})
		sessions = append(sessions, ss...)
		took += cr.Took
		if cr.Failed > 0 {
			return r, fmt.Errorf("%d clients failed to connect: %v", cr.Failed, cr.Errors)
		}
	}
	r.ConnectSeconds = round(took.Seconds(), 2)
	// Readers answer the hub's pings, should the run outlast an interval.
	for _, ss := range sessions {
		go func() {
			for {
				if _, _, err := ss.ws.readFrame(); err != nil {
					return
				}
			}
		}()
	}
	sleepCtx(ctx, p.Settle.D())
	after, err := snapshot(ctx, s)
	if err != nil {
		return r, err
	}
	fn := float64(n)
	r.RSSBefore, r.RSSAfter = int64(before.rss), int64(after.rss)
	r.RSSPerConn = round((after.rss-before.rss)/fn, 0)
	r.HeapInusePerConn = round((after.heapInuse-before.heapInuse)/fn, 0)
	r.StackPerConn = round((after.stack-before.stack)/fn, 0)
	r.GoSysPerConn = round((after.sys-before.sys)/fn, 0)
	r.GoroutinesPerConn = round((after.goroutines-before.goroutines)/fn, 2)
	if before.hasLive && after.hasLive {
		r.LiveHeapPerConn = round((after.live-before.live)/fn, 0)
	}
	if c.profileDir != "" && after.hasLive {
		_ = s.heapProfile(ctx, fmt.Sprintf("%s/idle-%d.heap.pprof", c.profileDir, n))
	}
	return r, s.alive()
}
