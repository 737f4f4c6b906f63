package pearltest

import (
	"fmt"
	"slices"
	"sync"
	"time"
)

// Defaults for Options.
const (
	DefaultUsername     = "admin"
	DefaultFirmware     = "4.24.1"
	DefaultControlDelay = 300 * time.Millisecond
	DefaultFaultDelay   = 2 * time.Second
)

// Options configure a Device. Every field has a usable zero value.
type Options struct {
	// Username for Basic auth; default "admin".
	Username string
	// Password for Basic auth; "" is allowed (the default admin password
	// of a real device may be empty). Basic auth is checked on every call.
	Password string
	// Name is the system/ident name; may be "".
	Name string
	// Location and Description are reported by system/ident.
	Location    string
	Description string
	// Firmware is the version reported by system/firmware; default
	// "4.24.1". Four-part versions like "10.2.5.110" exist.
	Firmware string
	// Product is the product name; default "Pearl-2".
	Product string
	// Channels is the initial layout; nil means DefaultChannels().
	Channels []Channel
	// System is the initial health; nil means uptime 5490 s, load 25 %,
	// 57 °C with a 70 °C threshold, date as an ISO string.
	System *SystemStatus
	// ControlDelay is how long a started publisher stays "starting";
	// default 300ms (DefaultControlDelay). Negative means no delay.
	ControlDelay time.Duration
	// FaultDelay is how long FaultSlow sleeps; default 2s
	// (DefaultFaultDelay).
	FaultDelay time.Duration
	// MaxConcurrent, when positive, makes requests beyond that many in
	// flight fail with 503, as real devices do with more than about three
	// concurrent requests. Zero means no limit.
	MaxConcurrent int
	// Now is the clock used for states, uptime and dates; default time.Now.
	Now func() time.Time
}

// Device is one simulated Pearl; it is an http.Handler serving
// /api/v2.0/... . It is safe for concurrent use and owns no goroutines.
type Device struct {
	now func() time.Time

	mu            sync.Mutex
	username      string
	password      string
	name          string
	location      string
	description   string
	firmware      string
	product       string
	channels      []*channel
	sys           system
	controlDelay  time.Duration
	maxConcurrent int

	fault         Fault
	faultDelay    time.Duration
	injected      Fault
	injectedCount int

	requests    map[string]int
	total       int
	inFlight    int
	maxInFlight int
}

type channel struct {
	id         string
	name       string
	encoder    Encoder
	publishers []*publisher
}

type publisher struct {
	id     string
	typ    string
	name   string
	mode   string
	status PublisherStatus
	// pending is the state entered at pendingAt ("" for none): the end of
	// an asynchronous start.
	pending   string
	pendingAt time.Time
	stats     srtStats
}

// NewDevice returns a Device configured by opts.
func NewDevice(opts Options) *Device {
	d := &Device{
		now:           opts.Now,
		username:      opts.Username,
		password:      opts.Password,
		name:          opts.Name,
		location:      opts.Location,
		description:   opts.Description,
		firmware:      opts.Firmware,
		product:       opts.Product,
		controlDelay:  opts.ControlDelay,
		maxConcurrent: opts.MaxConcurrent,
		faultDelay:    opts.FaultDelay,
		requests:      make(map[string]int),
	}
	if d.now == nil {
		d.now = time.Now
	}
	if d.username == "" {
		d.username = DefaultUsername
	}
	if d.faultDelay <= 0 {
		d.faultDelay = DefaultFaultDelay
	}
	if d.firmware == "" {
		d.firmware = DefaultFirmware
	}
	if d.product == "" {
		d.product = "Pearl-2"
	}
	switch {
	case d.controlDelay == 0:
		d.controlDelay = DefaultControlDelay
	case d.controlDelay < 0:
		d.controlDelay = 0
	}
	chans := opts.Channels
	if chans == nil {
		chans = DefaultChannels()
	}
	now := d.now()
	for _, ch := range chans {
		d.channels = append(d.channels, newChannel(ch, now))
	}
	sys := SystemStatus{Uptime: 5490, CPULoad: 25, CPUTemp: 57, CPUTempThreshold: 70}
	if opts.System != nil {
		sys = *opts.System
	}
	d.sys.set(sys, now)
	return d
}

func newChannel(ch Channel, now time.Time) *channel {
	c := &channel{id: ch.ID, name: ch.Name, encoder: ch.Encoder.withDefaults()}
	for _, p := range ch.Publishers {
		pub := &publisher{id: p.ID, typ: p.Type, name: p.Name, mode: p.Mode}
		if pub.typ == TypeSRT && pub.mode == "" {
			pub.mode = ModeCaller
		}
		pub.setStatus(p.Status, now)
		c.publishers = append(c.publishers, pub)
	}
	return c
}

// setStatus replaces the status of p as SetPublisherStatus documents.
func (p *publisher) setStatus(st PublisherStatus, now time.Time) {
	st = st.clone()
	st.Duration = 0
	if st.State == "" {
		st.State = StateStopped
		if st.Started {
			st.State = StateStarted
		}
	}
	switch {
	case !st.Started:
		st.Since = time.Time{}
	case st.Since.IsZero() && isRunning(st.State):
		st.Since = now
	}
	if !st.Since.Equal(p.status.Since) {
		p.stats = srtStats{}
	}
	p.status = st
	p.pending = ""
}

// snapshot returns the public view of p at now.
func (p *publisher) snapshot(now time.Time) Publisher {
	st := p.status.clone()
	if st.Started && !st.Since.IsZero() {
		st.Duration = max(now.Sub(st.Since), 0)
	}
	return Publisher{ID: p.id, Type: p.typ, Name: p.name, Mode: p.mode, Status: st}
}

// advance applies a due asynchronous transition.
func (p *publisher) advance(now time.Time) {
	if p.pending == "" || now.Before(p.pendingAt) {
		return
	}
	p.status.State = p.pending
	if p.status.Since.IsZero() {
		p.status.Since = p.pendingAt
		p.stats = srtStats{}
	}
	p.pending = ""
}

// start begins an asynchronous start of p, as the control endpoint does.
func (p *publisher) start(now time.Time, delay time.Duration) {
	if !p.status.IsConfigured {
		p.status = PublisherStatus{
			State:       StateError,
			Description: "Publisher is not configured",
		}
		p.pending = ""
		return
	}
	if p.status.Started && p.status.State != StateError && p.status.State != StateStopped {
		return // already running or starting: a start is a no-op
	}
	p.status = PublisherStatus{IsConfigured: true, Started: true, State: StateStarting}
	p.stats = srtStats{}
	p.schedule(now, delay)
}

// reconnect moves a running or failed publisher back to starting, counting
// a reconnection; Since and the statistics are kept.
func (p *publisher) reconnect(now time.Time, delay time.Duration) {
	p.status.Started = true
	p.status.State = StateStarting
	p.status.Description = ""
	p.status.Reconnections++
	p.schedule(now, delay)
}

func (p *publisher) schedule(now time.Time, delay time.Duration) {
	p.pending = StateStarted
	if p.typ == TypeSRT && p.mode == ModeListener {
		p.pending = StateListening
	}
	p.pendingAt = now.Add(delay)
}

// stop stops p at once: a Pearl has no "stopping" state.
func (p *publisher) stop() {
	p.status = PublisherStatus{IsConfigured: p.status.IsConfigured, State: StateStopped}
	p.stats = srtStats{}
	p.pending = ""
}

// channel returns the channel with id, advancing its publishers. The
// caller holds d.mu.
func (d *Device) channel(id string, now time.Time) *channel {
	for _, c := range d.channels {
		if c.id == id {
			c.advance(now)
			return c
		}
	}
	return nil
}

// advance applies the due transitions of every publisher of c.
func (c *channel) advance(now time.Time) {
	for _, p := range c.publishers {
		p.advance(now)
	}
}

func (c *channel) publisher(id string) *publisher {
	for _, p := range c.publishers {
		if p.id == id {
			return p
		}
	}
	return nil
}

// notFoundError is returned by the scripting methods for unknown ids; its
// message is the one the API uses.
type notFoundError struct{ channel, publisher string }

func (e *notFoundError) Error() string {
	if e.publisher == "" {
		return fmt.Sprintf("channel '%s' not found", e.channel)
	}
	return fmt.Sprintf("streamer '%s' for channel '%s' not found", e.publisher, e.channel)
}

// lookup returns the publisher pid of channel cid. The caller holds d.mu.
func (d *Device) lookup(cid, pid string, now time.Time) (*channel, *publisher, error) {
	c := d.channel(cid, now)
	if c == nil {
		return nil, nil, &notFoundError{channel: cid}
	}
	p := c.publisher(pid)
	if p == nil {
		return c, nil, &notFoundError{channel: cid, publisher: pid}
	}
	return c, p, nil
}

// SetPublisherStatus replaces the status of a publisher and cancels a
// pending start. A zero Since is set to now when st is started (Started
// and a state other than starting or stopped). It fails for unknown ids.
func (d *Device) SetPublisherStatus(channel, publisher string, st PublisherStatus) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	now := d.now()
	_, p, err := d.lookup(channel, publisher, now)
	if err != nil {
		return fmt.Errorf("setting publisher status: %w", err)
	}
	p.setStatus(st, now)
	return nil
}

// PublisherStatus returns the current status of a publisher, with Duration
// filled in. It fails for unknown ids.
func (d *Device) PublisherStatus(channel, publisher string) (PublisherStatus, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	now := d.now()
	_, p, err := d.lookup(channel, publisher, now)
	if err != nil {
		return PublisherStatus{}, fmt.Errorf("getting publisher status: %w", err)
	}
	return p.snapshot(now).Status, nil
}

// StartPublisher starts a publisher as POST .../control/start does:
// a configured publisher goes to starting and, after the control delay,
// to started (listening for SRT listeners); an unconfigured one goes to
// error. Starting a running publisher does nothing.
func (d *Device) StartPublisher(channel, publisher string) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	now := d.now()
	_, p, err := d.lookup(channel, publisher, now)
	if err != nil {
		return fmt.Errorf("starting publisher: %w", err)
	}
	p.start(now, d.controlDelay)
	return nil
}

// StopPublisher stops a publisher at once, as POST .../control/stop does.
func (d *Device) StopPublisher(channel, publisher string) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	_, p, err := d.lookup(channel, publisher, d.now())
	if err != nil {
		return fmt.Errorf("stopping publisher: %w", err)
	}
	p.stop()
	return nil
}

// updatePublisher calls fn on a publisher under the lock.
func (d *Device) updatePublisher(channel, publisher string, fn func(p *publisher, now time.Time)) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	now := d.now()
	_, p, err := d.lookup(channel, publisher, now)
	if err != nil {
		return err
	}
	fn(p, now)
	return nil
}

// Channels returns a copy of the current layout and publisher states.
func (d *Device) Channels() []Channel {
	d.mu.Lock()
	defer d.mu.Unlock()
	now := d.now()
	out := make([]Channel, 0, len(d.channels))
	for _, c := range d.channels {
		enc := c.encoder
		ch := Channel{ID: c.id, Name: c.name, Encoder: &enc}
		c.advance(now)
		for _, p := range c.publishers {
			ch.Publishers = append(ch.Publishers, p.snapshot(now))
		}
		out = append(out, ch)
	}
	return out
}

// AddChannel adds a channel, or replaces the channel with the same id.
func (d *Device) AddChannel(ch Channel) {
	d.mu.Lock()
	defer d.mu.Unlock()
	c := newChannel(ch, d.now())
	for i, old := range d.channels {
		if old.id == ch.ID {
			d.channels[i] = c
			return
		}
	}
	d.channels = append(d.channels, c)
}

// RemoveChannel removes a channel; unknown ids are ignored.
func (d *Device) RemoveChannel(id string) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.channels = slices.DeleteFunc(d.channels, func(c *channel) bool { return c.id == id })
}

// SetSystem sets the health the device reports; uptime and date then keep
// ticking from the values set.
func (d *Device) SetSystem(s SystemStatus) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.sys.set(s, d.now())
}

// System returns the health the device reports now.
func (d *Device) System() SystemStatus {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.sys.at(d.now())
}

// SetName sets the system/ident name.
func (d *Device) SetName(name string) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.name = name
}

// SetPassword changes the Basic auth password: a later request with the
// old one gets 401 with WWW-Authenticate: Basic.
func (d *Device) SetPassword(p string) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.password = p
}

// SetControlDelay sets how long a started publisher stays "starting".
// Zero or negative means it is started at the next read.
func (d *Device) SetControlDelay(delay time.Duration) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.controlDelay = max(delay, 0)
}

// SetMaxConcurrent sets Options.MaxConcurrent.
func (d *Device) SetMaxConcurrent(n int) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.maxConcurrent = n
}

// Reboot simulates a reboot: uptime restarts at 0 and every publisher is
// stopped (started=false, state=stopped). The Device keeps answering; use
// Server.SetRefused or FaultUnavailable for the time the device is down.
func (d *Device) Reboot() {
	d.mu.Lock()
	defer d.mu.Unlock()
	now := d.now()
	d.sys.reboot(now)
	for _, c := range d.channels {
		for _, p := range c.publishers {
			p.stop()
		}
	}
}

// Requests returns how many requests had the URL path path (for example
// "/api/v2.0/channels"), including failed ones.
func (d *Device) Requests(path string) int {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.requests[path]
}

// TotalRequests returns how many requests the device received.
func (d *Device) TotalRequests() int {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.total
}

// MaxInFlight returns the highest number of concurrent requests observed.
func (d *Device) MaxInFlight() int {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.maxInFlight
}

// ResetCounters zeroes the request counters and the in-flight high mark.
func (d *Device) ResetCounters() {
	d.mu.Lock()
	defer d.mu.Unlock()
	clear(d.requests)
	d.total = 0
	d.maxInFlight = d.inFlight
}

// begin records the start of a request and returns the fault to apply
// and whether the concurrency limit is exceeded.
func (d *Device) begin(path string) (f Fault, delay time.Duration, overLimit bool) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.requests[path]++
	d.total++
	d.inFlight++
	d.maxInFlight = max(d.maxInFlight, d.inFlight)
	f = d.fault
	if d.injectedCount > 0 {
		f = d.injected
		d.injectedCount--
	}
	return f, d.faultDelay, d.maxConcurrent > 0 && d.inFlight > d.maxConcurrent
}

func (d *Device) end() {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.inFlight--
}
