package main

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"github.com/pearld/pearld/sources/pearl/pearltest"
	"github.com/pearld/pearld/sources/redisstream"
	"github.com/pearld/pearld/sources/redisstream/redistest"
)

// clusterPipeline is what every instance of TestCluster runs: the shape of
// pipelines/cluster.toml, polling fast. Each instance reaches the devices
// under its own path (DEVICES_URL), so that the fleet can tell which
// instance made a request.
const clusterPipeline = `
%s
[sources.publishers]
type         = "pearl_publisher_status"
interval     = "100ms"
lease_redis  = "%[2]s"
lease_ttl    = "%[3]s"
lease_prefix = "%[4]s"

[sources.health]
type         = "pearl_device_health"
interval     = "200ms"
lease_redis  = "%[2]s"
lease_ttl    = "%[3]s"
lease_prefix = "%[4]s"

[processors.changes]
type   = "dedup"
inputs = ["publishers", "health"]

[sinks.to_stream]
type    = "redis_stream"
inputs  = ["changes"]
redis   = "%[2]s"
prefix  = "%[4]s"
history = 1000

[sources.from_stream]
type   = "redis_stream"
redis  = "%[2]s"
prefix = "%[4]s"

[sinks.live]
type       = "websocket"
inputs     = ["from_stream"]
listen     = "127.0.0.1:${HUB_PORT}"
jwt_secret = "%[5]s"
`

const clusterTTL = time.Second

// fleet is a set of fake Pearls behind one server that records which
// instance made each request: instance NAME reaches device DEV at
// /NAME/DEV/api/v2.0/...
type fleet struct {
	srv     *httptest.Server
	devices map[string]*pearltest.Device
	mu      sync.Mutex
	log     []request
}

type request struct {
	at               time.Time
	instance, device string
	path             string
}

func newFleet(t *testing.T, names ...string) *fleet {
	t.Helper()
	f := &fleet{devices: map[string]*pearltest.Device{}}
	for _, n := range names {
		f.devices[n] = pearltest.NewDevice(pearltest.Options{Password: "pw", Channels: []pearltest.Channel{
			{ID: "1", Name: "HDMI-A", Publishers: []pearltest.Publisher{{ID: "0", Type: pearltest.TypeRTMP, Name: "Stream 1",
				Status: pearltest.PublisherStatus{IsConfigured: true, State: pearltest.StateStopped}}}},
		}})
	}
	f.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		parts := strings.SplitN(strings.TrimPrefix(r.URL.Path, "/"), "/", 3)
		dev := f.devices[parts[min(1, len(parts)-1)]]
		if len(parts) < 3 || dev == nil {
			http.NotFound(w, r)
			return
		}
		f.mu.Lock()
		f.log = append(f.log, request{at: time.Now(), instance: parts[0], device: parts[1], path: "/" + parts[2]})
		f.mu.Unlock()
		r2 := r.Clone(r.Context())
		r2.URL.Path = "/" + parts[2]
		dev.ServeHTTP(w, r2)
	}))
	t.Cleanup(f.srv.Close)
	return f
}

// requests returns the requests to device, oldest first.
func (f *fleet) requests(device string) []request {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []request
	for _, r := range f.log {
		if r.device == device {
			out = append(out, r)
		}
	}
	return out
}

// pollers returns the instances that made requests to device at or after
// from.
func (f *fleet) pollers(device string, from time.Time) []string {
	var out []string
	for _, r := range f.requests(device) {
		if !r.at.Before(from) && !slices.Contains(out, r.instance) {
			out = append(out, r.instance)
		}
	}
	return out
}

// flip toggles the publisher of a device.
func (f *fleet) flip(t *testing.T, device string) {
	t.Helper()
	d := f.devices[device]
	st, err := d.PublisherStatus("1", "0")
	if err != nil {
		t.Fatal(err)
	}
	next := pearltest.PublisherStatus{IsConfigured: true, State: pearltest.StateStopped}
	if !st.Started {
		next = pearltest.PublisherStatus{IsConfigured: true, Started: true, State: pearltest.StateStarted}
	}
	if err := d.SetPublisherStatus("1", "0", next); err != nil {
		t.Fatal(err)
	}
}

// liveClient is a hub client that records every frame it reads, from its
// own goroutine.
type liveClient struct {
	t     *testing.T
	conn  *websocket.Conn
	epoch float64
	done  chan struct{}

	mu     sync.Mutex
	frames []map[string]any
}

func connectLive(t *testing.T, port int, token string) *liveClient {
	t.Helper()
	c := dial(t, fmt.Sprintf("ws://127.0.0.1:%d/", port), token)
	m := c.expect("connected", 5*time.Second)
	_ = c.conn.SetReadDeadline(time.Time{})
	lc := &liveClient{t: t, conn: c.conn, done: make(chan struct{}),
		epoch: m["capabilities"].(map[string]any)["epoch"].(float64)}
	go func() {
		defer close(lc.done)
		for {
			var f map[string]any
			if err := lc.conn.ReadJSON(&f); err != nil {
				return
			}
			lc.mu.Lock()
			lc.frames = append(lc.frames, f)
			lc.mu.Unlock()
		}
	}()
	t.Cleanup(func() {
		lc.conn.Close()
		<-lc.done
	})
	return lc
}

func (c *liveClient) subscribe(device string, since uint64) {
	c.t.Helper()
	m := map[string]any{"type": "subscribe", "dataType": "publisher_status", "device": device, "channel": "1"}
	if since > 0 {
		m["since"], m["epoch"] = since, c.epoch
	}
	if err := c.conn.WriteJSON(m); err != nil {
		c.t.Fatalf("subscribing: %v", err)
	}
}

// seqs returns the seqs of the events of device's key the client got, in
// order, and fails on a frame a resume must not produce.
func (c *liveClient) seqs(device string) []uint64 {
	c.t.Helper()
	c.mu.Lock()
	defer c.mu.Unlock()
	var out []uint64
	for _, f := range c.frames {
		if f["subscriptionKey"] != "publisher_status:"+device+":1" {
			continue
		}
		switch f["type"] {
		case "data_update", "cached_data":
			if f["recovered"] == false {
				c.t.Fatalf("%s: resume not served: %v", device, f)
			}
			out = append(out, uint64(f["seq"].(float64)))
		case "error":
			c.t.Fatalf("%s: %v", device, f)
		}
	}
	return out
}

func (c *liveClient) last(device string) uint64 {
	s := c.seqs(device)
	if len(s) == 0 {
		return 0
	}
	return s[len(s)-1]
}

// history returns the seqs of every event of device's key in Redis: the
// truth clients are compared with.
func history(t *testing.T, r *redistest.Server, device string) []uint64 {
	t.Helper()
	msgs, err := r.Client.XRange(context.Background(),
		redisstream.Keys{Prefix: r.Prefix}.History("publisher_status:"+device+":1"), "-", "+").Result()
	if err != nil {
		t.Fatal(err)
	}
	out := make([]uint64, len(msgs))
	for i, m := range msgs {
		out[i], _ = redisstream.SeqOf(m.ID)
	}
	return out
}

// TestCluster runs three pearld instances on one Redis server and a fleet
// of fake Pearls:
//   - every device is polled by one instance at a time (its lease holder);
//   - a client of B gets the changes of devices that A polls;
//   - when A is killed (SIGKILL), its devices are polled by B or C within
//     the lease TTL, and a client of A resumes on B with `since` and gets
//     exactly the events it missed, in order;
//   - A, restarted, serves a resume from before it started, from Redis.
func TestCluster(t *testing.T) {
	r := redistest.New(t)
	devices := []string{"d1", "d2", "d3", "d4"}
	fl := newFleet(t, devices...)
	var devs strings.Builder
	for _, d := range devices {
		fmt.Fprintf(&devs, "[devices.%s]\naddress = \"${DEVICES_URL}/%s\"\npassword = \"pw\"\ntimeout = \"1s\"\n\n", d, d)
	}
	file := filepath.Join(t.TempDir(), "cluster.toml")
	src := fmt.Sprintf(clusterPipeline, devs.String(), r.URL, clusterTTL, r.Prefix, testSecret)
	if err := os.WriteFile(file, []byte(src), 0o600); err != nil {
		t.Fatal(err)
	}
	ports := map[string][]int{}
	for _, name := range []string{"a", "b", "c"} {
		ports[name] = freePorts(t, 2)
	}
	start := func(name string) *daemon {
		t.Helper()
		t.Setenv("DEVICES_URL", fl.srv.URL+"/"+name)
		t.Setenv("HUB_PORT", strconv.Itoa(ports[name][0]))
		d := startDaemon(t, "run", "--config", file, "--status-addr", "127.0.0.1:"+strconv.Itoa(ports[name][1]))
		d.waitLog("pipeline started", 10*time.Second)
		return d
	}
	token, err := mintToken(testSecret, "cluster", "", "", []string{"realtime_data"}, nil, time.Hour)
	if err != nil {
		t.Fatal(err)
	}

	// A starts first and takes every device; B and C wait.
	a := start("a")
	for _, d := range devices {
		waitUntil(t, "a to poll "+d, 10*time.Second, func() bool { return len(fl.pollers(d, time.Time{})) == 1 })
	}
	start("b")
	start("c")
	cA := connectLive(t, ports["a"][0], token)
	cB := connectLive(t, ports["b"][0], token)
	if cA.epoch != cB.epoch {
		t.Fatalf("epochs %v and %v: every instance must report the stream's", cA.epoch, cB.epoch)
	}
	for _, d := range devices {
		cA.subscribe(d, 0)
		cB.subscribe(d, 0)
	}
	// Changes of devices A polls reach clients of B.
	flipSeen := func(c *liveClient, d string) {
		t.Helper()
		n := len(history(t, r, d))
		fl.flip(t, d)
		waitUntil(t, "the change of "+d+" in redis", 5*time.Second, func() bool { return len(history(t, r, d)) > n })
		want := history(t, r, d)[n]
		waitUntil(t, "the change of "+d+" on the client", 5*time.Second, func() bool { return c.last(d) >= want })
	}
	for range 2 {
		for _, d := range devices {
			flipSeen(cB, d)
		}
	}
	for _, d := range devices {
		h := history(t, r, d)
		waitUntil(t, "a's client to catch up on "+d, 5*time.Second, func() bool { return cA.last(d) == h[len(h)-1] })
	}

	// Kill A. Its devices move; their changes go on.
	if err := a.cmd.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	_ = a.wait(10 * time.Second)
	killedAt := time.Now()
	<-cA.done
	missedFrom := map[string]uint64{}
	for _, d := range devices {
		missedFrom[d] = cA.last(d)
		fl.flip(t, d) // while nobody polls it
	}
	for _, d := range devices {
		waitUntil(t, d+" to be polled again", clusterTTL+5*time.Second, func() bool { return len(fl.pollers(d, killedAt)) > 0 })
	}
	for range 2 {
		for _, d := range devices {
			flipSeen(cB, d)
		}
	}

	// A's client resumes on B: exactly what it missed, in order.
	cA2 := connectLive(t, ports["b"][0], token)
	for _, d := range devices {
		cA2.subscribe(d, missedFrom[d])
	}
	for _, d := range devices {
		h := history(t, r, d)
		waitUntil(t, "the resume of "+d, 5*time.Second, func() bool { return cA2.last(d) == h[len(h)-1] })
		got := append(cA.seqs(d), cA2.seqs(d)...)
		if want := h[slices.Index(h, got[0]):]; !slices.Equal(got, want) {
			t.Errorf("%s: the client got %v across A and B, want %v (redis)", d, got, want)
		}
	}

	// A, restarted, started after the events its new client missed: it
	// replays them from Redis.
	start("a")
	cL := connectLive(t, ports["a"][0], token)
	for _, d := range devices {
		cL.subscribe(d, missedFrom[d])
	}
	for _, d := range devices {
		h := history(t, r, d)
		waitUntil(t, "the late resume of "+d, 5*time.Second, func() bool { return cL.last(d) == h[len(h)-1] })
		if got, want := cL.seqs(d), h[slices.Index(h, missedFrom[d])+1:]; !slices.Equal(got, want) {
			t.Errorf("%s: a resume on restarted A got %v, want %v (redis)", d, got, want)
		}
	}

	if n := replays(t, ports["a"][1]); n < float64(len(devices)) {
		t.Errorf("restarted A served %v complete replays from Redis, want %d", n, len(devices))
	}

	// One poller per device at any time: A until it was killed, then one
	// other instance, which took over within the lease TTL.
	for _, d := range devices {
		reqs := fl.requests(d)
		var segments []request // the first request of each run of one instance
		for _, q := range reqs {
			if len(segments) == 0 || segments[len(segments)-1].instance != q.instance {
				segments = append(segments, q)
			}
		}
		if len(segments) != 2 || segments[0].instance != "a" {
			var runs []string
			for _, s := range segments {
				runs = append(runs, s.instance+"@"+s.at.Format("15:04:05.000"))
			}
			t.Errorf("%s was polled by %v, want a, then one other instance", d, runs)
			continue
		}
		took := segments[1].at.Sub(killedAt)
		if took > clusterTTL+time.Second {
			t.Errorf("%s: polled again %s after a was killed, want within the %s TTL (and a second)", d, took, clusterTTL)
		}
		// The first observation and five flips: the new holder started
		// from the state A recorded, so taking over made no event.
		if n := len(history(t, r, d)); n != 6 {
			t.Errorf("%s: %d events in redis, want 6: the first observation and a change per flip", d, n)
		}
		t.Logf("%s: polled by a, then by %s %s after a was killed", d, segments[1].instance, took.Round(time.Millisecond))
		total := 0
		for _, p := range []string{"/api/v2.0/channels", "/api/v2.0/system/status"} {
			total += fl.devices[d].Requests(p)
		}
		if n := len(reqs); n < total {
			t.Errorf("%s: %d requests seen by the fleet, %d by the device", d, n, total)
		}
	}
}

// replays returns the complete replays an instance's redis_stream source
// served, from its /metrics.
func replays(t *testing.T, statusPort int) float64 {
	t.Helper()
	resp, err := http.Get(fmt.Sprintf("http://127.0.0.1:%d/metrics", statusPort))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	sum := 0.0
	for _, line := range strings.Split(string(b), "\n") {
		if strings.HasPrefix(line, "pearld_redis_stream_replays_total{") && strings.Contains(line, `result="complete"`) {
			v, err := strconv.ParseFloat(line[strings.LastIndexByte(line, ' ')+1:], 64)
			if err != nil {
				t.Fatalf("metrics line %q: %v", line, err)
			}
			sum += v
		}
	}
	return sum
}
