package pearl

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"sync"
	"time"

	"github.com/pearld/pearld/engine"
)

// TypeDeviceHealth is the data type of the events of pearl_device_health.
const TypeDeviceHealth = "device_health"

// The values of DeviceHealthData.Status.
const (
	// HealthOnline: the device answers and is fine.
	HealthOnline = "online"
	// HealthDegraded: the device answers, but reports cpuload_high or a
	// cputemp at or above its cputemp_threshold.
	HealthDegraded = "degraded"
	// HealthOffline: no usable answer (timeout, refused, 5xx, garbage, no
	// REST API v2.0, ...); error_message says which.
	HealthOffline = "offline"
	// HealthAuthFailed: the device refused the credentials (401) or the
	// account's rights (403).
	HealthAuthFailed = "auth_failed"
)

func init() {
	engine.RegisterSource("pearl_device_health", func() any { return NewDeviceHealthSource() })
}

// Interface guards.
var (
	_ engine.Source      = (*DeviceHealthSource)(nil)
	_ engine.Initializer = (*DeviceHealthSource)(nil)
	_ engine.DataTyper   = (*DeviceHealthSource)(nil)
)

// DeviceHealthSource is the pearl_device_health source: it polls
// GET /system/status of its devices (and /system/ident and
// /system/firmware at first contact and after a reboot) and emits a
// device_health event when a device's status (online, degraded, offline,
// auth_failed) or the class of its failure changes, when it rebooted, and,
// if cpu_step or temp_step are set, when its figures moved that much. The
// first poll of a device always emits.
type DeviceHealthSource struct {
	// Devices are names or glob patterns of the pipeline's devices;
	// default (empty or "*") all.
	Devices []string `toml:"devices"`
	// Interval between polls; default 10s.
	Interval engine.Duration `toml:"interval"`
	// MaxBackoff is the longest wait between polls of a failing device;
	// default 60s.
	MaxBackoff engine.Duration `toml:"max_backoff"`
	// CPUStep, when positive, also emits when cpuload moved by at least
	// that many points since the last event; default 0 (off).
	CPUStep int `toml:"cpu_step"`
	// TempStep, when positive, also emits when cputemp moved by at least
	// that many degrees since the last event; default 0 (off).
	TempStep int `toml:"temp_step"`
	// LeaseConfig (lease_redis, lease_ttl, lease_prefix) shares the
	// polling of the devices among pearld instances; default off.
	LeaseConfig

	log     *slog.Logger
	clients []*Client
	leases  []*deviceLease // nil without lease_redis
}

// NewDeviceHealthSource returns the source with its defaults.
func NewDeviceHealthSource() *DeviceHealthSource {
	return &DeviceHealthSource{
		Interval:   engine.Duration(10 * time.Second),
		MaxBackoff: engine.Duration(DefaultMaxBackoff),
	}
}

// Init validates the configuration and gets the devices' clients. It does
// not touch the network.
func (s *DeviceHealthSource) Init(env *engine.Env) error {
	switch {
	case s.Interval <= 0:
		return fmt.Errorf("interval must be positive, not %s", s.Interval)
	case s.MaxBackoff < s.Interval:
		return fmt.Errorf("max_backoff (%s) must not be less than interval (%s)", s.MaxBackoff, s.Interval)
	case s.CPUStep < 0:
		return fmt.Errorf("cpu_step must not be negative, not %d", s.CPUStep)
	case s.TempStep < 0:
		return fmt.Errorf("temp_step must not be negative, not %d", s.TempStep)
	}
	if err := s.LeaseConfig.validate(); err != nil {
		return err
	}
	clients, err := clientsFor(env, s.Devices)
	if err != nil {
		return err
	}
	leases, err := leasesFor(env, s.LeaseConfig, clients)
	if err != nil {
		return err
	}
	s.log, s.clients, s.leases = env.Logger, clients, leases
	return nil
}

// DataTypes returns ["device_health"].
func (s *DeviceHealthSource) DataTypes() []string { return []string{TypeDeviceHealth} }

// Run polls every device from its own goroutine until ctx ends, then
// returns nil; with leases, each device while this instance holds its
// lease. A failing device never stops or delays the others.
func (s *DeviceHealthSource) Run(ctx context.Context, emit func(engine.Event)) error {
	if s.log == nil {
		return errors.New("running pearl_device_health: not initialised")
	}
	var wg sync.WaitGroup
	for i, c := range s.clients {
		w := &healthWatcher{
			client: c,
			emit:   emit,
			log:    s.log.With("device", c.Name()),
		}
		loop := &pollLoop{
			client:     c,
			poll:       w.poll,
			interval:   s.Interval.D(),
			maxBackoff: s.MaxBackoff.D(),
			minGap:     min(s.Interval.D(), time.Second),
		}
		wg.Go(func() {
			pollDevice(ctx, leaseOf(s.leases, i), func(ctx context.Context, seed []engine.Event) {
				w.tracker = newHealthTracker(c, s.CPUStep, s.TempStep)
				w.tracker.seed(seed)
				loop.run(ctx)
			})
		})
	}
	wg.Wait()
	return nil
}

// healthWatcher polls one device for the source.
type healthWatcher struct {
	client  *Client
	tracker *healthTracker
	emit    func(engine.Event)
	log     *slog.Logger
}

func (w *healthWatcher) poll(ctx context.Context) (bool, error) {
	st, err := w.client.SystemStatus(ctx)
	if err != nil {
		if ctx.Err() != nil {
			return false, err
		}
		if ev, ok := w.tracker.failed(err, time.Now()); ok {
			w.logTransition(ev, err)
			w.emit(ev.Event)
		}
		return false, err
	}
	at := time.Now()
	rebooted := w.tracker.checkReboot(st, at)
	w.identify(ctx)
	if ctx.Err() != nil {
		return false, ctx.Err()
	}
	if ev, ok := w.tracker.succeeded(st, rebooted, at); ok {
		w.logTransition(ev, nil)
		w.emit(ev.Event)
	}
	return false, nil
}

// identify fetches the identity and firmware when they are due: at first
// contact, after a reboot, and again after a failure that may pass. They
// do not decide the device's health.
func (w *healthWatcher) identify(ctx context.Context) {
	t := w.tracker
	if t.needIdent {
		id, err := w.client.Ident(ctx)
		if err == nil {
			t.ident = &id
		}
		t.needIdent = !settled(err)
	}
	if t.needFirmware && ctx.Err() == nil {
		fw, err := w.client.Firmware(ctx)
		if err == nil {
			t.firmware = &fw
		}
		t.needFirmware = !settled(err)
	}
}

// settled reports whether asking again soon is pointless: only a device
// that is unavailable or answers garbage may do better at the next poll.
// A refusal (not found, rejected, unauthorized) stands until the next
// reboot.
func settled(err error) bool {
	return err == nil || !errors.Is(err, ErrUnavailable) && !errors.Is(err, ErrBadResponse)
}

func (w *healthWatcher) logTransition(ev healthEvent, err error) {
	d := ev.data
	if d.Rebooted {
		w.log.Info("device rebooted", "uptime", d.System.Uptime)
	}
	switch {
	case !ev.statusChanged && err != nil:
		w.log.Info("device still failing, differently", "status", d.Status, "err", err)
		return
	case !ev.statusChanged:
		return
	}
	switch d.Status {
	case HealthOnline:
		attrs := []any{"device_name", d.DeviceName}
		if d.Firmware != nil {
			attrs = append(attrs, "firmware", d.Firmware.Version)
		}
		w.log.Info("device online", attrs...)
	case HealthDegraded:
		w.log.Warn("device degraded", "cpuload", d.System.CPULoad, "cpuload_high", d.System.CPULoadHigh,
			"cputemp", d.System.CPUTemp, "cputemp_threshold", d.System.CPUTempThreshold)
	case HealthAuthFailed:
		w.log.Warn("device refuses the credentials", "err", err)
	default:
		w.log.Warn("device offline", "err", err)
	}
}

// DeviceHealthData is the data of a device_health event.
type DeviceHealthData struct {
	// Status is HealthOnline, HealthDegraded, HealthOffline or
	// HealthAuthFailed.
	Status string `json:"status"`
	// ErrorMessage describes the failure; "" when the device answers.
	ErrorMessage string `json:"error_message"`
	// ErrorCount counts the failed polls in a row; 0 when the device
	// answers.
	ErrorCount int `json:"error_count"`
	// LastSeen is when the device last answered (ISO-8601 UTC with
	// milliseconds), nil if it never did.
	LastSeen   *string `json:"last_seen"`
	DeviceID   string  `json:"device_id"`
	DeviceIP   string  `json:"device_ip"`
	DeviceName string  `json:"device_name"` // system/ident name, "" when unknown or unset
	// System is set when the device answers.
	System *HealthSystem `json:"system,omitempty"`
	// Firmware is set once known.
	Firmware *Firmware `json:"firmware,omitempty"`
	// Rebooted is true on the event that reports a reboot.
	Rebooted bool `json:"rebooted,omitempty"`
}

// HealthSystem are the figures of GET /system/status in DeviceHealthData.
type HealthSystem struct {
	CPULoad          int   `json:"cpuload"`
	CPULoadHigh      bool  `json:"cpuload_high"`
	CPUTemp          int   `json:"cputemp"`
	CPUTempThreshold int   `json:"cputemp_threshold"`
	Uptime           int64 `json:"uptime"`
}

// healthTracker turns the successive polls of one device into
// device_health events.
type healthTracker struct {
	device, ip        string
	cpuStep, tempStep int
	// rebootSlack is how far uptime may lag behind the time elapsed
	// since the last answer before it counts as a reboot; it covers
	// request latency and clock drift over an outage.
	rebootSlack int64

	ident                   *Ident
	firmware                *Firmware
	needIdent, needFirmware bool
	uptime                  int64
	uptimeAt                time.Time
	reboots                 int
	lastSeen                time.Time
	errCount                int

	// The last event emitted.
	emitted                bool
	emittedStatus          string
	emittedReason          string
	emittedFigures         bool
	emittedCPU, emittedTmp int
}

func newHealthTracker(c *Client, cpuStep, tempStep int) *healthTracker {
	return &healthTracker{
		device: c.Name(), ip: c.Host(),
		cpuStep: cpuStep, tempStep: tempStep,
		rebootSlack: int64((2*c.Timeout() + 5*time.Second) / time.Second),
		needIdent:   true, needFirmware: true,
	}
}

// healthEvent is an event with its data, for logging.
type healthEvent struct {
	engine.Event
	data          DeviceHealthData
	statusChanged bool
}

// checkReboot records the uptime of a successful poll at time at and
// reports whether the device rebooted since the last one: uptime went
// down, or grew less than the time elapsed (a reboot during an outage).
func (t *healthTracker) checkReboot(st SystemStatus, at time.Time) bool {
	rebooted := false
	if t.uptime > 0 {
		expected := t.uptime + int64(at.Sub(t.uptimeAt)/time.Second)
		rebooted = st.Uptime < t.uptime || st.Uptime+t.rebootSlack < expected
	}
	t.uptime, t.uptimeAt = st.Uptime, at
	if rebooted {
		t.reboots++
		t.needIdent, t.needFirmware = true, true // the firmware may have been updated
	}
	return rebooted
}

// succeeded records a successful poll and returns the event to emit, if
// any.
func (t *healthTracker) succeeded(st SystemStatus, rebooted bool, at time.Time) (healthEvent, bool) {
	status := HealthOnline
	if st.CPULoadHigh || (st.CPUTempThreshold > 0 && st.CPUTemp >= st.CPUTempThreshold) {
		status = HealthDegraded
	}
	t.lastSeen, t.errCount = at, 0
	statusChanged := !t.emitted || status != t.emittedStatus
	moved := t.cpuStep > 0 && (!t.emittedFigures || abs(st.CPULoad-t.emittedCPU) >= t.cpuStep) ||
		t.tempStep > 0 && (!t.emittedFigures || abs(st.CPUTemp-t.emittedTmp) >= t.tempStep)
	if !statusChanged && !rebooted && !moved {
		return healthEvent{}, false
	}
	t.emitted, t.emittedStatus, t.emittedReason = true, status, ""
	t.emittedFigures, t.emittedCPU, t.emittedTmp = true, st.CPULoad, st.CPUTemp
	sys := &HealthSystem{
		CPULoad: st.CPULoad, CPULoadHigh: st.CPULoadHigh,
		CPUTemp: st.CPUTemp, CPUTempThreshold: st.CPUTempThreshold,
		Uptime: st.Uptime,
	}
	return t.event(status, "", "", sys, rebooted, statusChanged, at), true
}

// failed records a failed poll and returns the event to emit, if any.
func (t *healthTracker) failed(err error, at time.Time) (healthEvent, bool) {
	status := HealthOffline
	if errors.Is(err, ErrUnauthorized) {
		status = HealthAuthFailed
	}
	reason := ReasonOf(err)
	if reason == "" {
		reason = "error"
	}
	t.errCount++
	if t.emitted && status == t.emittedStatus && reason == t.emittedReason {
		return healthEvent{}, false
	}
	statusChanged := !t.emitted || status != t.emittedStatus
	t.emitted, t.emittedStatus, t.emittedReason, t.emittedFigures = true, status, reason, false
	return t.event(status, reason, err.Error(), nil, false, statusChanged, at), true
}

func (t *healthTracker) event(status, reason, msg string, sys *HealthSystem, rebooted, statusChanged bool, at time.Time) healthEvent {
	d := DeviceHealthData{
		Status:       status,
		ErrorMessage: msg,
		ErrorCount:   t.errCount,
		DeviceID:     t.device,
		DeviceIP:     t.ip,
		System:       sys,
		Firmware:     t.firmware,
		Rebooted:     rebooted,
	}
	if !t.lastSeen.IsZero() {
		d.LastSeen = ptr(isoTime(t.lastSeen))
	}
	if t.ident != nil {
		d.DeviceName = t.ident.Name
	}
	return healthEvent{
		Event: engine.Event{
			Type:   TypeDeviceHealth,
			Device: t.device,
			Time:   at,
			Data:   mustMarshal(d),
			Hash:   t.hash(status, reason, sys),
		},
		data:          d,
		statusChanged: statusChanged,
	}
}

// hash covers the status, the class of failure, the number of reboots
// seen and, when cpu_step or temp_step are set, the figures' buckets of
// that size. Any two events the tracker emits in a row differ in one of
// them: figures that moved by a step lie in different buckets.
func (t *healthTracker) hash(status, reason string, sys *HealthSystem) uint64 {
	var h engine.Hasher
	h.Add(status)
	h.Add(reason)
	h.Add(strconv.Itoa(t.reboots))
	if sys != nil && t.cpuStep > 0 {
		h.Add(strconv.Itoa(floorDiv(sys.CPULoad, t.cpuStep)))
	}
	if sys != nil && t.tempStep > 0 {
		h.Add(strconv.Itoa(floorDiv(sys.CPUTemp, t.tempStep)))
	}
	return h.Sum()
}

func abs(n int) int { return max(n, -n) }

// floorDiv divides rounding towards negative infinity (temperatures may be
// negative).
func floorDiv(a, b int) int {
	q := a / b
	if (a%b != 0) && ((a < 0) != (b < 0)) {
		q--
	}
	return q
}
