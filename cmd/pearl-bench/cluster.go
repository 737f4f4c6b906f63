package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/redis/go-redis/v9"

	// The cluster's components, so that `serve` (-self) runs them too.
	_ "github.com/pearld/pearld/sinks/redisstream"
	_ "github.com/pearld/pearld/sources/redisstream"
)

// clusterParams are the flags of the cluster scenario.
type clusterParams struct {
	Hubs      []int   `json:"hubs"`
	Clients   int     `json:"clients"` // in all, spread evenly over the hubs
	Events    int     `json:"events"`
	Rate      float64 `json:"rate"`   // events/s; 0: closed loop
	Window    int     `json:"window"` // with rate 0: events in flight at most
	Payload   int     `json:"payload_bytes"`
	PerIP     int     `json:"clients_per_ip"`
	Parallel  int     `json:"connect_parallel"`
	Warmup    int     `json:"warmup_events"`
	SendQueue int     `json:"send_queue"`
	Redis     string  `json:"-"`
	Drain     Dur     `json:"drain"`
}

func clusterFlags(fs *flag.FlagSet) func(context.Context, *common) error {
	p := &clusterParams{}
	hubs := fs.String("hubs", "1,2,3", "comma-separated hub counts to measure, one run each")
	fs.IntVar(&p.Clients, "clients", 1500, "subscribers of the one key, in all, spread evenly over the hubs")
	fs.IntVar(&p.Events, "events", 2000, "events to publish in each run")
	fs.Float64Var(&p.Rate, "rate", 0, "events per second; 0: closed loop (at most -window events in flight)")
	fs.IntVar(&p.Window, "window", 32, "with -rate 0: events published but not yet delivered to every client, at most")
	fs.IntVar(&p.Payload, "payload", 100, "bytes of padding in each event's data")
	fs.IntVar(&p.PerIP, "per-ip", 20, "clients per source address (the hub allows 25 by default)")
	fs.IntVar(&p.Parallel, "parallel", 64, "connects in flight")
	fs.IntVar(&p.Warmup, "warmup", 20, "events published and delivered before measuring")
	fs.IntVar(&p.SendQueue, "send-queue", 0, "hub send_queue (0: the hub's default)")
	fs.StringVar(&p.Redis, "redis", "redis://127.0.0.1:6379/0", "Redis server the instances share (the run's keys are deleted after)")
	durVar(fs, &p.Drain, "drain", 5*time.Second, "after the last event, wait this long without progress before counting the rest lost")
	return func(ctx context.Context, c *common) error {
		for _, f := range strings.Split(*hubs, ",") {
			n, err := strconv.Atoi(strings.TrimSpace(f))
			if err != nil || n < 1 {
				return fmt.Errorf("-hubs: %q is not a hub count", f)
			}
			p.Hubs = append(p.Hubs, n)
		}
		res, err := runCluster(ctx, c, *p)
		if err != nil {
			return err
		}
		var parts []string
		for _, r := range res {
			parts = append(parts, r.summary())
		}
		return c.report(Result{Scenario: "cluster", Params: structParams(p), Results: res, Summary: strings.Join(parts, "; ")})
	}
}

// ClusterRun is what the cluster scenario measured with one hub count.
type ClusterRun struct {
	Hubs             int     `json:"hubs"`
	Connected        int     `json:"connected"`
	Published        int     `json:"published"`
	Expected         uint64  `json:"expected"`
	Delivered        uint64  `json:"delivered"`
	DeliveredRatio   float64 `json:"delivered_ratio"`
	Seconds          float64 `json:"seconds"` // first publish to last delivery
	DeliveriesPerSec float64 `json:"deliveries_per_sec"`
	Latency          Latency `json:"latency"`            // publish (webhook on the first instance) to receipt
	ServerCPUPercent float64 `json:"server_cpu_percent"` // every instance, of one core
	RedisCPUPercent  float64 `json:"redis_cpu_percent"`  // of one core
	BenchCPUPercent  float64 `json:"bench_cpu_percent"`
	CPUPerDeliveryUS float64 `json:"cpu_per_delivery_us"` // instances and Redis
	ClientsDropped   int     `json:"clients_dropped"`
}

func (r *ClusterRun) summary() string {
	return fmt.Sprintf("%d hub(s), %d clients: %.0f deliveries/s, p50 %.1f ms p99 %.1f ms, instances %.0f%% + redis %.0f%% of a core, delivered %d/%d",
		r.Hubs, r.Connected, r.DeliveriesPerSec, r.Latency.P50, r.Latency.P99, r.ServerCPUPercent, r.RedisCPUPercent, r.Delivered, r.Expected)
}

func runCluster(ctx context.Context, c *common, p clusterParams) ([]*ClusterRun, error) {
	if p.Clients < 1 || p.Events < 1 {
		return nil, fmt.Errorf("-clients and -events must be at least 1")
	}
	if _, err := raiseNoFile(p.Clients + 256); err != nil {
		return nil, err
	}
	opts, err := redis.ParseURL(p.Redis)
	if err != nil {
		return nil, fmt.Errorf("-redis: %w", err)
	}
	rdb := redis.NewClient(opts)
	defer rdb.Close()
	if err := rdb.Ping(ctx).Err(); err != nil {
		return nil, fmt.Errorf("reaching redis at %s (scripts/ensure-redis.sh starts one): %w", opts.Addr, err)
	}
	o, err := c.serverOptions(ctx)
	if err != nil {
		return nil, err
	}
	var out []*ClusterRun
	for _, hubs := range p.Hubs {
		prefix := "pearl-bench:" + randomHex(6)
		c.progress("%d hub(s), keys %s:* ...", hubs, prefix)
		r, err := clusterRun(ctx, c, o, rdb, prefix, hubs, p)
		if n, derr := deleteKeys(context.Background(), rdb, prefix); derr != nil {
			c.progress("deleting %d keys of %s: %v", n, prefix, derr)
		}
		if err != nil {
			return nil, fmt.Errorf("%d hubs: %w", hubs, err)
		}
		out = append(out, r)
	}
	return out, nil
}

// clusterPipeline is what every instance runs: webhook -> redis_stream
// sink, and redis_stream source -> hub. Events are published to the first
// instance's webhook and reach every hub through Redis.
func clusterPipeline(listen, redisURL, prefix, serviceKey string, sendQueue int) string {
	var b strings.Builder
	fmt.Fprintf(&b, "# Generated by pearl-bench cluster.\n\n")
	fmt.Fprintf(&b, "[sources.ingest]\ntype = \"webhook\"\nservice_keys = [%s]\nmax_events = 1000\nmax_body = %d\n\n", tomlString(serviceKey), 1<<20)
	fmt.Fprintf(&b, "[sinks.to_stream]\ntype = \"redis_stream\"\ninputs = [\"ingest\"]\nredis = %s\nprefix = %s\n\n", tomlString(redisURL), tomlString(prefix))
	fmt.Fprintf(&b, "[sources.from_stream]\ntype = \"redis_stream\"\nredis = %s\nprefix = %s\n\n", tomlString(redisURL), tomlString(prefix))
	fmt.Fprintf(&b, "[sinks.live]\ntype = \"websocket\"\ninputs = [\"from_stream\"]\nlisten = %s\njwt_secret = \"${JWT_SECRET}\"\n", tomlString(listen))
	if sendQueue > 0 {
		fmt.Fprintf(&b, "send_queue = %d\n", sendQueue)
	}
	return b.String()
}

func clusterRun(ctx context.Context, c *common, o serverOptions, rdb *redis.Client, prefix string, hubs int, p clusterParams) (*ClusterRun, error) {
	key := randomHex(16)
	nodes := make([]*server, 0, hubs)
	defer func() {
		for _, s := range nodes {
			s.stop()
		}
	}()
	for range hubs {
		s, err := startNode(ctx, o, func(listen string) string { return clusterPipeline(listen, p.Redis, prefix, key, p.SendQueue) })
		if err != nil {
			return nil, err
		}
		nodes = append(nodes, s)
	}

	res := &ClusterRun{Hubs: hubs}
	var sessions []*session
	defer func() { closeAll(sessions) }()
	for i, s := range nodes {
		tok, err := s.token("bench", authRead)
		if err != nil {
			return nil, err
		}
		n := p.Clients / hubs
		if i < p.Clients%hubs {
			n++
		}
		first := len(sessions)
		ss, cr := connectMany(ctx, n, first, p.Parallel, p.PerIP, 2,
			dialOptions{Addr: s.listen, Path: "/ws", Token: tok, ReadBuf: 16 << 10}, []subKey{fanoutKey})
		sessions = append(sessions, ss...)
		if cr.Failed > 0 {
			return nil, fmt.Errorf("%d of %d clients of hub %d failed to connect: %v", cr.Failed, n, i+1, cr.Errors)
		}
	}
	res.Connected = len(sessions)

	var measureFrom atomic.Int64
	measureFrom.Store(1<<63 - 1)
	hist := &Histogram{}
	recv := make([]*receiver, len(sessions))
	for i, sess := range sessions {
		recv[i] = &receiver{s: sess, done: make(chan struct{})}
		go recv[i].run(hist, &measureFrom)
	}
	sum := func(f func(*receiver) uint64) uint64 {
		var n uint64
		for _, r := range recv {
			n += f(r)
		}
		return n
	}
	delivered := func() uint64 { return sum(func(r *receiver) uint64 { return r.delivered.Load() }) }
	pub := newPublisher(nodes[0], key, p.Payload)
	defer pub.close()

	for i := range p.Warmup {
		if err := pub.publish(ctx, -1-i); err != nil {
			return nil, err
		}
	}
	want := uint64(p.Warmup) * uint64(len(recv))
	if !waitFor(ctx, 10*time.Second, func() bool { return sum(func(r *receiver) uint64 { return r.warm.Load() }) >= want }) {
		return nil, fmt.Errorf("warm-up: %d of %d deliveries in 10s", sum(func(r *receiver) uint64 { return r.warm.Load() }), want)
	}

	c.progress("publishing %d events to %d clients on %d hub(s) ...", p.Events, len(recv), hubs)
	cpu0, err := nodesCPU(nodes)
	if err != nil {
		return nil, err
	}
	redis0, err := redisCPU(ctx, rdb)
	if err != nil {
		return nil, err
	}
	bench0, _ := readProcStat(os.Getpid())
	start := time.Now()
	measureFrom.Store(start.UnixNano())
	period := time.Duration(0)
	if p.Rate > 0 {
		period = time.Duration(float64(time.Second) / p.Rate)
	}
	n := uint64(len(recv))
	published := 0
publishing:
	for i := range p.Events {
		if period > 0 {
			if d := time.Until(start.Add(time.Duration(i) * period)); d > 0 {
				sleepCtx(ctx, d)
			}
		} else if i >= p.Window {
			need := uint64(i-p.Window) * n
			stalled := time.Now()
			for delivered() < need {
				if time.Since(stalled) > p.Drain.D() || ctx.Err() != nil {
					c.progress("no progress for %v: stopping at event %d", p.Drain, i)
					break publishing
				}
				time.Sleep(50 * time.Microsecond)
			}
		}
		if ctx.Err() != nil {
			break
		}
		if err := pub.publish(ctx, i); err != nil {
			return nil, err
		}
		published++
	}
	expected := uint64(published) * n
	last, lastChange := uint64(0), time.Now()
	for {
		got := delivered()
		if got >= expected || ctx.Err() != nil {
			break
		}
		if got != last {
			last, lastChange = got, time.Now()
		} else if time.Since(lastChange) > p.Drain.D() {
			break
		}
		time.Sleep(2 * time.Millisecond)
	}
	cpu1, err := nodesCPU(nodes)
	if err != nil {
		return nil, err
	}
	redis1, err := redisCPU(ctx, rdb)
	if err != nil {
		return nil, err
	}
	bench1, _ := readProcStat(os.Getpid())

	var lastNs int64
	for _, r := range recv {
		lastNs = max(lastNs, r.last.Load())
		select {
		case <-r.done:
			res.ClientsDropped++
		default:
		}
	}
	window := time.Duration(lastNs - start.UnixNano())
	if window <= 0 {
		window = time.Since(start)
	}
	res.Published, res.Expected, res.Delivered = published, expected, delivered()
	res.DeliveredRatio = round(float64(res.Delivered)/float64(max(expected, 1)), 6)
	res.Seconds = round(window.Seconds(), 3)
	res.DeliveriesPerSec = round(float64(res.Delivered)/window.Seconds(), 0)
	res.Latency = hist.Summary()
	res.ServerCPUPercent = round(100*(cpu1-cpu0).Seconds()/window.Seconds(), 1)
	res.RedisCPUPercent = round(100*(redis1-redis0).Seconds()/window.Seconds(), 1)
	res.BenchCPUPercent = round(100*(bench1.CPU()-bench0.CPU()).Seconds()/window.Seconds(), 1)
	if res.Delivered > 0 {
		res.CPUPerDeliveryUS = round(float64((cpu1-cpu0+redis1-redis0).Microseconds())/float64(res.Delivered), 3)
	}
	for _, s := range nodes {
		if err := s.alive(); err != nil {
			return nil, err
		}
	}
	return res, nil
}

// nodesCPU returns the CPU time of every instance so far.
func nodesCPU(nodes []*server) (time.Duration, error) {
	var total time.Duration
	for _, s := range nodes {
		st, err := readProcStat(s.pid)
		if err != nil {
			return 0, err
		}
		total += st.CPU()
	}
	return total, nil
}

// redisCPU returns the Redis server's CPU time so far (INFO cpu).
func redisCPU(ctx context.Context, rdb *redis.Client) (time.Duration, error) {
	info, err := rdb.Info(ctx, "cpu").Result()
	if err != nil {
		return 0, fmt.Errorf("reading redis CPU: %w", err)
	}
	var secs float64
	for _, line := range strings.Split(info, "\n") {
		k, v, ok := strings.Cut(strings.TrimSpace(line), ":")
		if ok && (k == "used_cpu_sys" || k == "used_cpu_user") {
			f, err := strconv.ParseFloat(v, 64)
			if err != nil {
				return 0, fmt.Errorf("reading redis CPU: %s: %w", line, err)
			}
			secs += f
		}
	}
	return time.Duration(secs * float64(time.Second)), nil
}

// deleteKeys deletes every key under prefix and returns how many.
func deleteKeys(ctx context.Context, rdb *redis.Client, prefix string) (int, error) {
	n := 0
	iter := rdb.Scan(ctx, 0, prefix+":*", 1000).Iterator()
	for iter.Next(ctx) {
		if err := rdb.Del(ctx, iter.Val()).Err(); err != nil {
			return n, err
		}
		n++
	}
	return n, iter.Err()
}

// startNode starts a server like startServer does, with a pipeline file
// of the given text instead of a pipelineSpec.
func startNode(ctx context.Context, o serverOptions, text func(listen string) string) (*server, error) {
	dir, err := os.MkdirTemp("", "pearl-bench-")
	if err != nil {
		return nil, fmt.Errorf("creating temporary directory: %w", err)
	}
	s := &server{dir: dir, exited: make(chan struct{}), http: &http.Client{Timeout: 30 * time.Second}}
	ok := false
	defer func() {
		if !ok {
			s.stop()
		}
	}()
	ports, err := freePorts(2)
	if err != nil {
		return nil, err
	}
	s.listen = "127.0.0.1:" + strconv.Itoa(ports[0])
	s.statusAddr = "127.0.0.1:" + strconv.Itoa(ports[1])
	s.secret = randomHex(32)
	file := filepath.Join(dir, "cluster.toml")
	if err := os.WriteFile(file, []byte(text(s.listen)), 0o600); err != nil {
		return nil, fmt.Errorf("writing pipeline: %w", err)
	}
	argv := []string{o.Binary, "run"}
	if o.Self {
		exe, err := os.Executable()
		if err != nil {
			return nil, fmt.Errorf("finding the bench binary: %w", err)
		}
		argv = []string{exe, "serve"}
	}
	argv = append(argv, "--config", file, "--status-addr", s.statusAddr, "--log-level", "warn",
		"--plugins-dir", filepath.Join(dir, "plugins"), "--shutdown-timeout", "5s")
	if o.Pin >= 0 {
		ts, err := exec.LookPath("taskset")
		if err != nil {
			return nil, fmt.Errorf("pinning the server needs taskset (util-linux): %w", err)
		}
		argv = append([]string{ts, "-c", strconv.Itoa(o.Pin)}, argv...)
	}
	s.logPath = filepath.Join(dir, "server.log")
	logf, err := os.Create(s.logPath)
	if err != nil {
		return nil, fmt.Errorf("creating server log: %w", err)
	}
	defer logf.Close()
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Env = append(append(os.Environ(), "JWT_SECRET="+s.secret), o.Env...)
	cmd.Stdout = logf
	cmd.Stderr = logf
	if o.Verbose {
		cmd.Stderr = io.MultiWriter(logf, os.Stderr)
	}
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("starting %s: %w", argv[0], err)
	}
	s.cmd, s.pid = cmd, cmd.Process.Pid
	go func() {
		s.exitErr = cmd.Wait()
		close(s.exited)
	}()
	if err := s.waitReady(ctx, 15*time.Second); err != nil {
		return nil, err
	}
	ok = true
	return s, nil
}
