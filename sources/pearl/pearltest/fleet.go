package pearltest

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net"
	"strconv"
	"sync"
	"time"
)

// FleetOptions configure a Fleet. Every field but N has a usable zero value.
type FleetOptions struct {
	// N is the number of devices, at least 1.
	N int
	// Listen is the address of the first device, "127.0.0.1:8400"; device
	// i listens on the port after device i-1's. With port 0 every device
	// gets a free port of its own. Default "127.0.0.1:0".
	Listen string
	// Username and Password for Basic auth on every device; the username
	// defaults to "admin" and the password may be empty.
	Username string
	Password string
	// TLS serves HTTPS with a self-signed certificate per device.
	TLS bool
	// Seed seeds the layouts and the random changes: a seed gives the same
	// fleet and, step by step, the same changes.
	Seed int64
	// Tick is how often Run makes changes; default 1s.
	Tick time.Duration
	// FaultRate is the probability, per device and tick, of a transient
	// fault on the device's next one to three requests; default 0.
	FaultRate float64
	// RebootRate is the probability, per device and tick, of a reboot: the
	// device refuses connections for a few ticks, answers 503 while it
	// boots, then comes back with its uptime reset and publishers stopped.
	// Default 0 (never). The fleet sets and clears the devices' SetFault
	// for this.
	RebootRate float64
	// ControlDelay is how long started publishers stay "starting";
	// default 300ms.
	ControlDelay time.Duration
	// FaultDelay is how long slow answers take; default 2s.
	FaultDelay time.Duration
	// MaxConcurrent limits concurrent requests per device (see
	// Options.MaxConcurrent); default 0, no limit.
	MaxConcurrent int
	// Logger receives a record per change; default discards.
	Logger *slog.Logger
}

// Fleet is a set of simulated devices, each behind its own Server on
// consecutive ports, that change over time in lifelike ways: publishers
// start, fail, reconnect and stop, CPU load and temperature drift, and,
// if asked, devices fail transiently or reboot. The servers listen from
// NewFleet until Close; Run (or Step) makes the changes.
type Fleet struct {
	opts    FleetOptions
	log     *slog.Logger
	devices []*Device
	servers []*Server

	stepMu sync.Mutex // guards rng and sims
	rng    *rand.Rand
	sims   []deviceSim

	runMu   sync.Mutex
	running bool
	closed  bool
	done    chan struct{}
	runs    sync.WaitGroup
}

// deviceSim is the reboot progress of one device.
type deviceSim struct {
	down    int // ticks left refusing connections
	booting int // ticks left answering 503
}

// transientFaults are the faults a running fleet injects.
var transientFaults = [...]Fault{
	FaultSlow, FaultUnavailable, FaultGarbage, FaultTruncated, FaultEmpty, FaultHTML, FaultNotOK,
}

// NewFleet creates the devices and starts their servers. It fails, with
// nothing left listening, when an address cannot be bound.
func NewFleet(opts FleetOptions) (*Fleet, error) {
	if opts.N < 1 {
		return nil, fmt.Errorf("creating fleet: need at least one device, got %d", opts.N)
	}
	if opts.Listen == "" {
		opts.Listen = "127.0.0.1:0"
	}
	if opts.Tick <= 0 {
		opts.Tick = time.Second
	}
	host, portText, err := net.SplitHostPort(opts.Listen)
	if err != nil {
		return nil, fmt.Errorf("creating fleet: parsing listen address: %w", err)
	}
	port, err := strconv.Atoi(portText)
	if err != nil || port < 0 || port+opts.N-1 > 65535 {
		return nil, fmt.Errorf("creating fleet: invalid port %q for %d devices", portText, opts.N)
	}
	f := &Fleet{
		opts: opts,
		log:  opts.Logger,
		rng:  rand.New(rand.NewPCG(uint64(opts.Seed), uint64(opts.Seed)^0x9e3779b97f4a7c15)),
		sims: make([]deviceSim, opts.N),
		done: make(chan struct{}),
	}
	if f.log == nil {
		f.log = slog.New(slog.DiscardHandler)
	}
	for i := range opts.N {
		d := NewDevice(f.deviceOptions(i))
		p := port
		if port != 0 {
			p = port + i
		}
		addr := net.JoinHostPort(host, strconv.Itoa(p))
		var s *Server
		if opts.TLS {
			s, err = NewTLSServerAt(d, addr)
		} else {
			s, err = NewServerAt(d, addr)
		}
		if err != nil {
			f.closeServers()
			return nil, fmt.Errorf("creating fleet: device %d: %w", i+1, err)
		}
		f.devices = append(f.devices, d)
		f.servers = append(f.servers, s)
	}
	return f, nil
}

// Devices returns the devices, in port order.
func (f *Fleet) Devices() []*Device { return append([]*Device(nil), f.devices...) }

// Servers returns the servers, in port order; Servers()[i] serves
// Devices()[i].
func (f *Fleet) Servers() []*Server { return append([]*Server(nil), f.servers...) }

// Run makes a Step every tick until ctx ends or the fleet is closed, then
// returns nil. Only one Run may be active at a time.
func (f *Fleet) Run(ctx context.Context) error {
	f.runMu.Lock()
	switch {
	case f.closed:
		f.runMu.Unlock()
		return errors.New("running fleet: fleet is closed")
	case f.running:
		f.runMu.Unlock()
		return errors.New("running fleet: already running")
	}
	f.running = true
	f.runs.Add(1)
	f.runMu.Unlock()
	defer func() {
		f.runMu.Lock()
		f.running = false
		f.runMu.Unlock()
		f.runs.Done()
	}()

	t := time.NewTicker(f.opts.Tick)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-f.done:
			return nil
		case <-t.C:
			f.Step()
		}
	}
}

// Close stops Run, closes every server and waits for their goroutines.
// It is safe to call twice.
func (f *Fleet) Close() {
	f.runMu.Lock()
	if f.closed {
		f.runMu.Unlock()
		return
	}
	f.closed = true
	close(f.done)
	f.runMu.Unlock()
	f.runs.Wait()
	f.stepMu.Lock()
	defer f.stepMu.Unlock()
	f.closeServers()
}

func (f *Fleet) closeServers() {
	for _, s := range f.servers {
		s.Close()
	}
}

// Step makes one tick of random changes on every device. Run calls it;
// tests may call it directly for deterministic steps.
func (f *Fleet) Step() {
	f.stepMu.Lock()
	defer f.stepMu.Unlock()
	select {
	case <-f.done:
		return
	default:
	}
	for i := range f.devices {
		f.stepDevice(i)
	}
}

func (f *Fleet) stepDevice(i int) {
	d, s, sim := f.devices[i], f.servers[i], &f.sims[i]
	log := f.log.With("device", i+1, "url", s.URL)
	switch {
	case sim.down > 0:
		sim.down--
		if sim.down == 0 {
			if err := s.setRefused(false); err != nil {
				log.Error("device cannot come back after reboot", "err", err)
				sim.down = 1
				return
			}
			d.SetFault(FaultUnavailable)
			sim.booting = 1 + f.rng.IntN(2)
			log.Info("device booting")
		}
		return
	case sim.booting > 0:
		sim.booting--
		if sim.booting == 0 {
			d.SetFault(FaultNone)
			log.Info("device up")
		}
		return
	case f.rng.Float64() < f.opts.RebootRate:
		d.Reboot()
		if err := s.setRefused(true); err != nil {
			log.Error("refusing connections", "err", err)
		}
		sim.down = 2 + f.rng.IntN(3)
		log.Info("device rebooting")
		return
	}
	if f.rng.Float64() < f.opts.FaultRate {
		fault := transientFaults[f.rng.IntN(len(transientFaults))]
		n := 1 + f.rng.IntN(3)
		d.InjectFault(fault, n)
		log.Info("injecting fault", "fault", fault.String(), "requests", n)
	}
	f.driftSystem(d)
	for _, ch := range d.Channels() {
		for _, p := range ch.Publishers {
			_ = d.updatePublisher(ch.ID, p.ID, func(p *publisher, now time.Time) {
				from := p.status.State
				if to := f.stepPublisher(d, p, now); to != from {
					log.Debug("publisher changed", "channel", ch.ID, "publisher", p.id, "from", from, "to", to)
				}
			})
		}
	}
}

var failures = [...]string{
	"Connection refused by remote server",
	"Connection timed out",
	"Connection reset by peer",
	"Authentication failed",
	"Host not found",
	"Broken pipe",
}

var warnings = [...]string{
	"Low bandwidth: frames are being dropped",
	"High network latency",
	"No audio signal",
	"No video signal",
}

// stepPublisher may make a random change to p and returns its state
// afterwards. It runs under the device lock.
func (f *Fleet) stepPublisher(d *Device, p *publisher, now time.Time) string {
	if p.pending != "" {
		return p.status.State // starting: the device finishes it
	}
	st := &p.status
	r := f.rng.Float64()
	switch {
	case !st.IsConfigured && st.State == StateError:
		if r < 0.1 {
			p.stop()
		}
	case !st.IsConfigured:
		if r < 0.005 {
			p.start(now, d.controlDelay) // fails: not configured
		}
	case st.State == StateStopped:
		if r < 0.05 {
			p.start(now, d.controlDelay)
		}
	case st.State == StateListening:
		if r < 0.2 {
			st.State = StateStarted // a caller connected
		}
	case st.State == StateStarted:
		switch {
		case r < 0.01:
			p.stop()
		case r < 0.03:
			st.State = StateError
			st.Description = failures[f.rng.IntN(len(failures))]
			st.Warnings = nil
		case r < 0.08:
			if len(st.Warnings) > 0 {
				st.Warnings = nil
			} else {
				st.Warnings = []string{warnings[f.rng.IntN(len(warnings))]}
			}
		}
	case st.State == StateError && st.Started:
		switch {
		case r < 0.3:
			p.reconnect(now, d.controlDelay)
		case r < 0.35:
			p.stop()
		}
	}
	return st.State
}

// driftSystem moves CPU load and temperature by a bounded random walk.
func (f *Fleet) driftSystem(d *Device) {
	d.mu.Lock()
	defer d.mu.Unlock()
	s := &d.sys
	load := s.cpuLoad + (30-s.cpuLoad)/8 + f.rng.IntN(13) - 6
	if f.rng.Float64() < 0.03 {
		load += 40 + f.rng.IntN(20) // a spike
	}
	s.cpuLoad = min(max(load, 2), 100)
	s.cpuLoadHigh = s.cpuLoad > 85
	threshold := s.cpuTempThreshold
	target := 42 + s.cpuLoad/4
	temp := s.cpuTemp + sign(target-s.cpuTemp) + f.rng.IntN(3) - 1
	if f.rng.Float64() < 0.02 {
		temp = threshold - 2 + f.rng.IntN(4) // near or just over the threshold
	}
	s.cpuTemp = min(max(temp, 30), threshold+8)
}

func sign(n int) int {
	switch {
	case n > 0:
		return 1
	case n < 0:
		return -1
	}
	return 0
}

// channelIDSets are the channel id layouts devices get in turn: ids are
// not 1..N on every device, as in the field.
var channelIDSets = [...][]string{{"1", "2"}, {"4", "5", "6"}, {"7", "10", "11"}, {"1", "2", "3"}}

var (
	channelNames = [...]string{"Main Camera", "Slides", "Program", "HDMI-A", "Side by side", "Podium"}
	streamNames  = [...]string{"YouTube", "Facebook Live", "Vimeo", "Studio SRT", "Backup", "CDN"}
	products     = [...]string{"Pearl-2", "Pearl Mini", "Pearl Nano"}
	firmwares    = [...]string{"4.24.1", "4.24.3", "4.25.0", "10.2.5.110"}
	resolutions  = [...]string{"1920x1080", "1280x720", "3840x2160"}
	framerates   = [...]int{30, 60, 25}
	bitrates     = [...]int{3000, 4500, 6000, 8000}
)

// deviceOptions returns the options of device i: a few channels with mixed
// RTMP and SRT publishers, about half of them running.
func (f *Fleet) deviceOptions(i int) Options {
	rng := f.rng
	now := time.Now()
	name := fmt.Sprintf("Pearl %02d", i+1)
	if i%5 == 4 {
		name = "" // the name may be empty
	}
	threshold := 70 + 5*rng.IntN(2)
	sys := SystemStatus{
		Uptime:           int64(3600 + rng.IntN(30*24*3600)),
		CPULoad:          15 + rng.IntN(30),
		CPUTemp:          45 + rng.IntN(12),
		CPUTempThreshold: threshold,
	}
	if i%2 == 1 {
		sys.Date = now.Unix() // some firmware reports an epoch
	}
	opts := Options{
		Username:      f.opts.Username,
		Password:      f.opts.Password,
		Name:          name,
		Location:      fmt.Sprintf("Room %d", 101+i),
		Description:   fmt.Sprintf("Simulated Pearl %d", i+1),
		Firmware:      firmwares[rng.IntN(len(firmwares))],
		Product:       products[rng.IntN(len(products))],
		System:        &sys,
		ControlDelay:  f.opts.ControlDelay,
		FaultDelay:    f.opts.FaultDelay,
		MaxConcurrent: f.opts.MaxConcurrent,
	}
	for j, id := range channelIDSets[i%len(channelIDSets)] {
		ch := Channel{
			ID:   id,
			Name: channelNames[(i+j)%len(channelNames)],
			Encoder: &Encoder{
				Resolution: resolutions[rng.IntN(len(resolutions))],
				Framerate:  framerates[rng.IntN(len(framerates))],
				Bitrate:    bitrates[rng.IntN(len(bitrates))],
			},
		}
		for k := range 1 + rng.IntN(3) {
			p := Publisher{
				ID:   strconv.Itoa(k),
				Type: TypeRTMP,
				Name: streamNames[rng.IntN(len(streamNames))],
			}
			if rng.IntN(2) == 0 {
				p.Type, p.Mode = TypeSRT, ModeCaller
				if rng.IntN(4) == 0 {
					p.Mode = ModeListener
				}
			}
			p.Status = PublisherStatus{IsConfigured: rng.Float64() < 0.9, State: StateStopped}
			if p.Status.IsConfigured && rng.IntN(2) == 0 {
				p.Status.Started, p.Status.State = true, StateStarted
				p.Status.Since = now.Add(-time.Duration(1+rng.IntN(7200)) * time.Second)
			}
			ch.Publishers = append(ch.Publishers, p)
		}
		opts.Channels = append(opts.Channels, ch)
	}
	return opts
}
