package main

import (
	"context"
	"flag"
	"fmt"
	"sort"
	"time"

	"github.com/pearld/pearld/sources/pearl/pearltest"
)

// pollParams are the flags of the poll scenario.
type pollParams struct {
	Devices  int   `json:"devices"`
	Interval Dur   `json:"interval"`
	Measure  int   `json:"measure_intervals"`
	Changes  bool  `json:"changes"` // the fleet makes lifelike random changes
	Clients  int   `json:"clients"`
	Keys     int   `json:"keys_per_client"`
	PerIP    int   `json:"clients_per_ip"`
	Seed     int64 `json:"seed"`
}

func pollFlags(fs *flag.FlagSet) func(context.Context, *common) error {
	p := &pollParams{}
	fs.IntVar(&p.Devices, "devices", 2000, "simulated devices (pearltest.Fleet in the bench process)")
	durVar(fs, &p.Interval, "interval", 5*time.Second, "poll interval of both pollers")
	fs.IntVar(&p.Measure, "measure", 3, "intervals measured in each phase")
	fs.BoolVar(&p.Changes, "changes", true, "let the fleet change publishers and system load every second, as devices in use do")
	fs.IntVar(&p.Clients, "clients", 200, "clients watching in the second phase (0: one phase only)")
	fs.IntVar(&p.Keys, "keys", 10, "publisher_status keys each client subscribes to")
	fs.IntVar(&p.PerIP, "per-ip", 20, "clients per source address")
	fs.Int64Var(&p.Seed, "seed", 1, "seed of the fleet")
	return func(ctx context.Context, c *common) error {
		res, err := runPoll(ctx, c, *p)
		if err != nil {
			return err
		}
		return c.report(Result{Scenario: "poll", Params: structParams(p), Results: res, Summary: res.summary(*p)})
	}
}

// PollPhase is what one phase of polling measured.
type PollPhase struct {
	Clients           int                `json:"clients"`
	Seconds           float64            `json:"seconds"`
	CPU               CPUUse             `json:"cpu"`
	RequestsPerDevice float64            `json:"requests_per_device_per_interval"`
	ByPath            map[string]float64 `json:"by_path"` // per device per interval
	MaxInFlight       int                `json:"max_in_flight"`
	EventsToClients   float64            `json:"messages_sent_per_sec"`
}

// PollResult is what the poll scenario measured.
type PollResult struct {
	Phases         []PollPhase `json:"phases"`
	ServerRSSBytes int64       `json:"server_rss_bytes"`
}

func (r *PollResult) summary(p pollParams) string {
	s := fmt.Sprintf("%d devices every %s:", p.Devices, p.Interval)
	for i, ph := range r.Phases {
		if i > 0 {
			s += ";"
		}
		s += fmt.Sprintf(" %d clients: server %.1f%% of a core, %.2f requests/device/interval, max %d in flight per device",
			ph.Clients, ph.CPU.Server, ph.RequestsPerDevice, ph.MaxInFlight)
	}
	return s
}

func runPoll(ctx context.Context, c *common, p pollParams) (*PollResult, error) {
	if p.Devices < 1 || p.Measure < 1 {
		return nil, fmt.Errorf("-devices and -measure must be at least 1")
	}
	if _, err := raiseNoFile(4*p.Devices + 2*p.Clients + 256); err != nil {
		return nil, err
	}
	c.progress("starting %d simulated devices ...", p.Devices)
	password := randomHex(8)
	fleet, err := pearltest.NewFleet(pearltest.FleetOptions{N: p.Devices, Listen: "127.0.0.1:0", Password: password, Seed: p.Seed})
	if err != nil {
		return nil, err
	}
	defer fleet.Close()
	if p.Changes {
		fctx, cancel := context.WithCancel(ctx)
		defer cancel()
		go func() { _ = fleet.Run(fctx) }()
	}
	devices := fleetDevices(fleet, password)
	spec := func(listen string) pipelineSpec {
		return pipelineSpec{Listen: listen, Devices: devices, Interval: p.Interval.D()}
	}
	var res *PollResult
	err = c.withServer(ctx, spec, func(s *server) error {
		var err error
		res, err = poll(ctx, c, s, fleet, devices, p)
		return err
	})
	return res, err
}

// fleetDevices names a fleet's devices dev-0001... in port order.
func fleetDevices(f *pearltest.Fleet, password string) []deviceSpec {
	var out []deviceSpec
	for i, s := range f.Servers() {
		out = append(out, deviceSpec{Name: fmt.Sprintf("dev-%04d", i+1), Address: s.URL, Password: password})
	}
	return out
}

// fleetKeys returns every publisher_status key of the fleet.
func fleetKeys(f *pearltest.Fleet, devices []deviceSpec) []subKey {
	var keys []subKey
	for i, d := range f.Devices() {
		for _, ch := range d.Channels() {
			keys = append(keys, subKey{DataType: "publisher_status", Device: devices[i].Name, Channel: ch.ID})
		}
	}
	return keys
}

func poll(ctx context.Context, c *common, s *server, fleet *pearltest.Fleet, devices []deviceSpec, p pollParams) (*PollResult, error) {
	res := &PollResult{}
	interval := p.Interval.D()
	// Let the first polls (all devices at once) and the dedup's first
	// events pass.
	c.progress("warming up for %v ...", interval+time.Second)
	sleepCtx(ctx, interval+time.Second)
	finishProfile := c.profile(ctx, s, "poll")
	c.waitQuiet(ctx, s)
	ph, err := pollPhase(ctx, s, fleet, 0, interval, p.Measure, c.pin)
	if err != nil {
		return nil, err
	}
	res.Phases = append(res.Phases, ph)
	if p.Clients > 0 {
		tok, err := s.token("bench", authRead)
		if err != nil {
			return nil, err
		}
		keys := fleetKeys(fleet, devices)
		c.progress("connecting %d clients, %d keys each ...", p.Clients, p.Keys)
		var sessions []*session
		defer func() { closeAll(sessions) }()
		for i := range p.Clients {
			var ks []subKey
			for j := range min(p.Keys, len(keys)) {
				ks = append(ks, keys[(i*p.Keys+j)%len(keys)])
			}
			ss, cr := connectMany(ctx, 1, i, 1, p.PerIP, 2, dialOptions{Addr: s.listen, Path: "/ws", Token: tok}, ks)
			if cr.Failed > 0 {
				return nil, fmt.Errorf("client %d: %v", i, cr.Errors)
			}
			sessions = append(sessions, ss...)
			go drain(ss[0])
		}
		c.waitQuiet(ctx, s)
		ph, err := pollPhase(ctx, s, fleet, p.Clients, interval, p.Measure, c.pin)
		if err != nil {
			return nil, err
		}
		res.Phases = append(res.Phases, ph)
	}
	finishProfile()
	if st, err := readProcStatus(s.pid); err == nil {
		res.ServerRSSBytes = st.RSS
	}
	return res, s.alive()
}

// drain reads and drops a session's frames until it ends.
func drain(s *session) {
	for {
		if _, _, err := s.ws.readFrame(); err != nil {
			return
		}
	}
}

// pollPhase measures the server's CPU and the devices' requests over n
// intervals.
func pollPhase(ctx context.Context, s *server, fleet *pearltest.Fleet, clients int, interval time.Duration, n, pin int) (PollPhase, error) {
	devs := fleet.Devices()
	for _, d := range devs {
		d.ResetCounters()
	}
	m0, err := s.metrics(ctx)
	if err != nil {
		return PollPhase{}, err
	}
	meter, err := startCPUMeter(s.pid, pin)
	if err != nil {
		return PollPhase{}, err
	}
	start := time.Now()
	sleepCtx(ctx, time.Duration(n)*interval)
	use, _, err := meter.stop()
	if err != nil {
		return PollPhase{}, err
	}
	took := time.Since(start)
	m1, err := s.metrics(ctx)
	if err != nil {
		return PollPhase{}, err
	}
	intervals := took.Seconds() / interval.Seconds()
	ph := PollPhase{Clients: clients, Seconds: round(took.Seconds(), 2), ByPath: map[string]float64{}}
	total := 0
	paths := map[string]int{}
	for _, d := range devs {
		total += d.TotalRequests()
		ph.MaxInFlight = max(ph.MaxInFlight, d.MaxInFlight())
		for _, path := range []string{"/api/v2.0/channels", "/api/v2.0/system/status", "/api/v2.0/system/ident", "/api/v2.0/system/firmware"} {
			paths[path] += d.Requests(path)
		}
	}
	per := float64(len(devs)) * intervals
	ph.RequestsPerDevice = round(float64(total)/per, 3)
	keys := make([]string, 0, len(paths))
	for k := range paths {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		if paths[k] > 0 {
			ph.ByPath[k] = round(float64(paths[k])/per, 3)
		}
	}
	ph.CPU = use
	sent := m1["pearld_websocket_messages_sent_total"] - m0["pearld_websocket_messages_sent_total"]
	ph.EventsToClients = round(sent/took.Seconds(), 1)
	return ph, nil
}
