package main

import (
	"bytes"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"sync"
	"time"

	"github.com/pearld/pearld/engine/auth"
	"github.com/pearld/pearld/sources/pearl/pearltest"
)

// e2eParams are the flags of the e2e scenario.
type e2eParams struct {
	Devices  int   `json:"devices"`
	Interval Dur   `json:"interval"`
	Rounds   int   `json:"rounds"`
	Controls int   `json:"controls"`
	PerIP    int   `json:"clients_per_ip"`
	Seed     int64 `json:"seed"`
}

func e2eFlags(fs *flag.FlagSet) func(context.Context, *common) error {
	p := &e2eParams{}
	fs.IntVar(&p.Devices, "devices", 50, "simulated devices; each gets one change per round, at a random moment")
	durVar(fs, &p.Interval, "interval", 5*time.Second, "poll interval")
	fs.IntVar(&p.Rounds, "rounds", 4, "rounds of changes (samples: devices x rounds)")
	fs.IntVar(&p.Controls, "controls", 20, "control commands (start a stopped publisher through the REST API)")
	fs.IntVar(&p.PerIP, "per-ip", 20, "clients per source address")
	fs.Int64Var(&p.Seed, "seed", 1, "seed of the fleet and of the change times")
	return func(ctx context.Context, c *common) error {
		res, err := runE2E(ctx, c, *p)
		if err != nil {
			return err
		}
		return c.report(Result{Scenario: "e2e", Params: structParams(p), Results: res, Summary: res.summary(*p)})
	}
}

// E2EResult is what the e2e scenario measured.
type E2EResult struct {
	// ChangeToClient is from a change on the device to its receipt by a
	// client; it includes the wait for the next poll, 0 to one interval.
	ChangeToClient Latency `json:"change_to_client"`
	// P99OverInterval is the p99 of ChangeToClient minus the interval:
	// what the pipeline adds beyond the longest wait for a poll (the
	// target is at most 50 ms). MaxOverInterval likewise for the maximum.
	P99OverInterval float64 `json:"p99_minus_interval_ms"`
	MaxOverInterval float64 `json:"max_minus_interval_ms"`
	// PollToClient is from the poll that saw the change (its fetched_at,
	// millisecond resolution) to the client.
	PollToClient Latency `json:"poll_to_client"`
	Lost         int     `json:"changes_lost"`
	// ControlToFirst is from sending a start command to the client's
	// receipt of the publisher's first new state (starting or started);
	// ControlToSettled to its started (or listening) state.
	ControlToFirst   Latency `json:"control_to_first_change"`
	ControlToSettled Latency `json:"control_to_settled"`
	ControlRequest   Latency `json:"control_request"` // the REST call itself
	ControlsLost     int     `json:"controls_lost"`
}

func (r *E2EResult) summary(p e2eParams) string {
	return fmt.Sprintf("interval %s: change->client p50 %.0f ms p99 %.0f ms max %.0f ms (p99 - interval %+.1f ms; poll->client p99 %.1f ms), %d lost; control->first change p99 %.0f ms, ->settled p99 %.0f ms max %.0f ms, %d lost",
		p.Interval, r.ChangeToClient.P50, r.ChangeToClient.P99, r.ChangeToClient.Max, r.P99OverInterval, r.PollToClient.P99, r.Lost,
		r.ControlToFirst.P99, r.ControlToSettled.P99, r.ControlToSettled.Max, r.ControlsLost)
}

func runE2E(ctx context.Context, c *common, p e2eParams) (*E2EResult, error) {
	if p.Devices < 1 || p.Rounds < 0 || p.Controls < 0 {
		return nil, fmt.Errorf("-devices must be at least 1, -rounds and -controls not negative")
	}
	if _, err := raiseNoFile(4*p.Devices + 256); err != nil {
		return nil, err
	}
	password := randomHex(8)
	fleet, err := pearltest.NewFleet(pearltest.FleetOptions{N: p.Devices, Listen: "127.0.0.1:0", Password: password, Seed: p.Seed})
	if err != nil {
		return nil, err
	}
	defer fleet.Close()
	devices := fleetDevices(fleet, password)
	spec := func(listen string) pipelineSpec {
		return pipelineSpec{Listen: listen, Devices: devices, Interval: p.Interval.D(), REST: true}
	}
	var res *E2EResult
	err = c.withServer(ctx, spec, func(s *server) error {
		var err error
		res, err = e2e(ctx, c, s, fleet, devices, p)
		return err
	})
	return res, err
}

// target is the publisher of a device that the scenario changes.
type target struct {
	dev       *pearltest.Device
	name      string // device id in the pipeline
	channel   string
	publisher string
}

// received is a data_update a client got.
type received struct {
	at      time.Time
	payload []byte
}

func e2e(ctx context.Context, c *common, s *server, fleet *pearltest.Fleet, devices []deviceSpec, p e2eParams) (*E2EResult, error) {
	interval := p.Interval.D()
	rng := rand.New(rand.NewPCG(uint64(p.Seed), 7))
	var targets []target
	for i, d := range fleet.Devices() {
		t := target{dev: d, name: devices[i].Name}
	pick:
		for _, ch := range d.Channels() {
			for _, pub := range ch.Publishers {
				if pub.Status.IsConfigured && pub.Type == pearltest.TypeRTMP {
					t.channel, t.publisher = ch.ID, pub.ID
					break pick
				}
			}
		}
		if t.channel == "" {
			ch := d.Channels()[0]
			t.channel, t.publisher = ch.ID, ch.Publishers[0].ID
		}
		targets = append(targets, t)
	}
	tok, err := s.token("bench", authRead)
	if err != nil {
		return nil, err
	}
	// One client per device, subscribed to the target's channel.
	inbox := make([]chan received, len(targets))
	var sessions []*session
	defer func() { closeAll(sessions) }()
	for i, t := range targets {
		key := subKey{DataType: "publisher_status", Device: t.name, Channel: t.channel}
		ss, cr := connectMany(ctx, 1, i, 1, p.PerIP, 2, dialOptions{Addr: s.listen, Path: "/ws", Token: tok}, []subKey{key})
		if cr.Failed > 0 {
			return nil, fmt.Errorf("client of %s: %v", t.name, cr.Errors)
		}
		sessions = append(sessions, ss[0])
		inbox[i] = make(chan received, 64)
		go func(sess *session, ch chan<- received) {
			defer close(ch)
			for {
				op, b, err := sess.ws.readFrame()
				if err != nil {
					return
				}
				if op == opText && isDataUpdate(b) {
					ch <- received{at: time.Now(), payload: bytes.Clone(b)}
				}
			}
		}(ss[0], inbox[i])
	}
	// Let the first polls pass, so that only our changes make events.
	sleepCtx(ctx, interval+time.Second)
	for _, in := range inbox {
		drainInbox(in)
	}

	c.waitQuiet(ctx, s)
	res := &E2EResult{}
	total, pollTo := &Histogram{}, &Histogram{}
	c.progress("%d rounds of %d changes, interval %v ...", p.Rounds, len(targets), interval)
	for round := range p.Rounds {
		var wg sync.WaitGroup
		var mu sync.Mutex
		start := time.Now()
		for i, t := range targets {
			offset := time.Duration(rng.Int64N(int64(interval)))
			marker := fmt.Sprintf("bench-%d-%d", round, i)
			wg.Go(func() {
				sleepCtx(ctx, time.Until(start.Add(offset)))
				t0 := time.Now()
				_ = t.dev.SetPublisherStatus(t.channel, t.publisher, pearltest.PublisherStatus{
					IsConfigured: true, Started: true, State: pearltest.StateError, Description: marker,
				})
				r, ok := awaitFrame(ctx, inbox[i], 2*interval+2*time.Second, func(b []byte) bool {
					return bytes.Contains(b, []byte(`"`+marker+`"`))
				})
				mu.Lock()
				defer mu.Unlock()
				if !ok {
					res.Lost++
					return
				}
				d := r.at.Sub(t0)
				total.Record(d)
				if f, ok := fetchedAt(r.payload); ok {
					pollTo.Record(r.at.Sub(f))
				}
			})
		}
		wg.Wait()
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
	}
	res.ChangeToClient, res.PollToClient = total.Summary(), pollTo.Summary()
	res.P99OverInterval = ms(total.Quantile(0.99) - interval)
	res.MaxOverInterval = ms(total.Max() - interval)

	if p.Controls > 0 {
		if err := controls(ctx, c, s, targets, inbox, p, res); err != nil {
			return nil, err
		}
	}
	return res, s.alive()
}

// controls stops the targets' publishers, then starts them through the
// REST API at random moments and times the client's view of the result.
func controls(ctx context.Context, c *common, s *server, targets []target, inbox []chan received, p e2eParams, res *E2EResult) error {
	interval := p.Interval.D()
	n := min(p.Controls, len(targets))
	c.progress("%d control commands ...", n)
	tok, err := s.token("bench-control", auth.Permissions{PublisherControl: true})
	if err != nil {
		return err
	}
	for i := range n {
		t := targets[i]
		_ = t.dev.SetPublisherStatus(t.channel, t.publisher, pearltest.PublisherStatus{IsConfigured: true, State: pearltest.StateStopped})
	}
	// Wait for every target's stopped state to reach its client.
	for i := range n {
		t := targets[i]
		if _, ok := awaitFrame(ctx, inbox[i], 2*interval+2*time.Second, func(b []byte) bool {
			return publisherState(b, t.publisher) == pearltest.StateStopped
		}); !ok {
			return fmt.Errorf("control: %s did not report its publisher stopped", t.name)
		}
	}
	first, settled, request := &Histogram{}, &Histogram{}, &Histogram{}
	var mu sync.Mutex
	var wg sync.WaitGroup
	client := &http.Client{Timeout: 10 * time.Second}
	defer client.CloseIdleConnections()
	rng := rand.New(rand.NewPCG(uint64(p.Seed), 11))
	start := time.Now()
	for i := range n {
		t := targets[i]
		offset := time.Duration(rng.Int64N(int64(interval)))
		wg.Go(func() {
			sleepCtx(ctx, time.Until(start.Add(offset)))
			url := "http://" + s.listen + "/api/devices/" + t.name + "/channels/" + t.channel + "/publishers/" + t.publisher + "/control/start"
			req, _ := http.NewRequestWithContext(ctx, http.MethodPost, url, nil)
			req.Header.Set("Authorization", "Bearer "+tok)
			t0 := time.Now()
			resp, err := client.Do(req)
			if err != nil {
				mu.Lock()
				res.ControlsLost++
				mu.Unlock()
				return
			}
			_, _ = io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			tr := time.Now()
			ok := resp.StatusCode/100 == 2
			var f, st received
			if ok {
				f, ok = awaitFrame(ctx, inbox[i], 5*time.Second, func(b []byte) bool {
					s := publisherState(b, t.publisher)
					return s != "" && s != pearltest.StateStopped
				})
			}
			if ok && !settledState(publisherState(f.payload, t.publisher)) {
				st, ok = awaitFrame(ctx, inbox[i], 5*time.Second, func(b []byte) bool {
					return settledState(publisherState(b, t.publisher))
				})
			} else {
				st = f
			}
			mu.Lock()
			defer mu.Unlock()
			if !ok {
				res.ControlsLost++
				return
			}
			request.Record(tr.Sub(t0))
			first.Record(f.at.Sub(t0))
			settled.Record(st.at.Sub(t0))
		})
	}
	wg.Wait()
	res.ControlToFirst, res.ControlToSettled, res.ControlRequest = first.Summary(), settled.Summary(), request.Summary()
	return nil
}

func settledState(s string) bool {
	return s == pearltest.StateStarted || s == pearltest.StateListening
}

// awaitFrame returns the first frame of in that match accepts, dropping
// the others, within limit.
func awaitFrame(ctx context.Context, in <-chan received, limit time.Duration, match func([]byte) bool) (received, bool) {
	t := time.NewTimer(limit)
	defer t.Stop()
	for {
		select {
		case r, ok := <-in:
			if !ok {
				return received{}, false
			}
			if match(r.payload) {
				return r, true
			}
		case <-t.C:
			return received{}, false
		case <-ctx.Done():
			return received{}, false
		}
	}
}

func drainInbox(in <-chan received) {
	for {
		select {
		case <-in:
		default:
			return
		}
	}
}

// statusFrame is the part of a publisher_status data_update the scenario
// reads.
type statusFrame struct {
	Data struct {
		Publishers []struct {
			ID     string `json:"id"`
			Status struct {
				State string `json:"state"`
			} `json:"status"`
		} `json:"publishers"`
		FetchedAt string `json:"fetched_at"`
	} `json:"data"`
}

// publisherState returns the state of publisher id in a publisher_status
// frame, "" when absent.
func publisherState(b []byte, id string) string {
	var f statusFrame
	if json.Unmarshal(b, &f) != nil {
		return ""
	}
	for _, p := range f.Data.Publishers {
		if p.ID == id {
			return p.Status.State
		}
	}
	return ""
}

// fetchedAt returns the data's fetched_at.
func fetchedAt(b []byte) (time.Time, bool) {
	var f statusFrame
	if json.Unmarshal(b, &f) != nil {
		return time.Time{}, false
	}
	t, err := time.Parse(time.RFC3339Nano, f.Data.FetchedAt)
	return t, err == nil
}
