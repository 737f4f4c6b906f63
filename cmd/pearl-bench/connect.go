package main

import (
	"context"
	"flag"
	"fmt"
	"time"
)

// connectParams are the flags of the connect scenario.
type connectParams struct {
	Clients  int  `json:"clients"`
	Parallel int  `json:"connect_parallel"`
	PerIP    int  `json:"clients_per_ip"`
	Retries  int  `json:"retries"`
	Storm    bool `json:"storm"`
}

func connectFlags(fs *flag.FlagSet) func(context.Context, *common) error {
	p := &connectParams{}
	fs.IntVar(&p.Clients, "clients", 2000, "clients")
	fs.IntVar(&p.Parallel, "parallel", 64, "connects in flight in the first phase")
	fs.IntVar(&p.PerIP, "per-ip", 20, "clients per source address")
	fs.IntVar(&p.Retries, "retries", 5, "retries of a failed connect")
	fs.BoolVar(&p.Storm, "storm", true, "then drop every client and reconnect all at once")
	return func(ctx context.Context, c *common) error {
		res, err := runConnect(ctx, c, *p)
		if err != nil {
			return err
		}
		return c.report(Result{Scenario: "connect", Params: structParams(p), Results: res, Summary: res.summary()})
	}
}

// ConnectPhase is what one phase of connects measured.
type ConnectPhase struct {
	Clients         int            `json:"clients"`
	Parallel        int            `json:"parallel"`
	Connected       int            `json:"connected"`
	Failed          int            `json:"failed"`
	Retries         int            `json:"retries"`
	Errors          map[string]int `json:"errors,omitempty"`
	Seconds         float64        `json:"seconds"`
	PerSecond       float64        `json:"per_second"`
	CPUPerConnectUS float64        `json:"cpu_per_connect_us"`
	CPU             CPUUse         `json:"cpu"`
	Latency         Latency        `json:"latency"` // dial to the subscription's answer
}

// ConnectResult is what the connect scenario measured.
type ConnectResult struct {
	Steady ConnectPhase  `json:"steady"`
	Storm  *ConnectPhase `json:"storm,omitempty"`
}

func (r *ConnectResult) summary() string {
	s := fmt.Sprintf("%d clients, %d in flight: %.0f connect+subscribe/s, %.0f us server CPU each, p99 %.1f ms",
		r.Steady.Clients, r.Steady.Parallel, r.Steady.PerSecond, r.Steady.CPUPerConnectUS, r.Steady.Latency.P99)
	if st := r.Storm; st != nil {
		s += fmt.Sprintf("; storm: all %d back in %.2f s (%.0f/s), p50 %.0f ms p99 %.0f ms, %d retries, %d failed",
			st.Clients, st.Seconds, st.PerSecond, st.Latency.P50, st.Latency.P99, st.Retries, st.Failed)
	}
	return s
}

func runConnect(ctx context.Context, c *common, p connectParams) (*ConnectResult, error) {
	if _, err := raiseNoFile(2*p.Clients + 256); err != nil {
		return nil, err
	}
	key := randomHex(16)
	spec := func(listen string) pipelineSpec { return pipelineSpec{Listen: listen, ServiceKey: key} }
	var res *ConnectResult
	err := c.withServer(ctx, spec, func(s *server) error {
		var err error
		res, err = connectScenario(ctx, c, s, p)
		return err
	})
	return res, err
}

func connectScenario(ctx context.Context, c *common, s *server, p connectParams) (*ConnectResult, error) {
	tok, err := s.token("bench", authRead)
	if err != nil {
		return nil, err
	}
	base := dialOptions{Addr: s.listen, Path: "/ws", Token: tok, ReadBuf: 1024, Timeout: 30 * time.Second}
	keys := []subKey{{DataType: "bench", Device: "connect"}}
	phase := func(parallel int) ([]*session, ConnectPhase, error) {
		c.waitQuiet(ctx, s)
		meter, err := startCPUMeter(s.pid, c.pin)
		if err != nil {
			return nil, ConnectPhase{}, err
		}
		sessions, cr := connectMany(ctx, p.Clients, 0, parallel, p.PerIP, p.Retries, base, keys)
		use, cpu, err := meter.stop()
		if err != nil {
			closeAll(sessions)
			return nil, ConnectPhase{}, err
		}
		ph := ConnectPhase{
			Clients: p.Clients, Parallel: parallel, Connected: cr.Connected, Failed: cr.Failed, Retries: cr.Retries, Errors: cr.Errors,
			Seconds:   round(cr.Took.Seconds(), 3),
			PerSecond: round(float64(cr.Connected)/cr.Took.Seconds(), 0),
			CPU:       use,
			Latency:   cr.Latency.Summary(),
		}
		if cr.Connected > 0 {
			ph.CPUPerConnectUS = round(float64(cpu.Microseconds())/float64(cr.Connected), 1)
		}
		if len(ph.Errors) == 0 {
			ph.Errors = nil
		}
		return sessions, ph, nil
	}
	c.progress("connecting %d clients, %d at a time ...", p.Clients, p.Parallel)
	sessions, steady, err := phase(p.Parallel)
	if err != nil {
		return nil, err
	}
	res := &ConnectResult{Steady: steady}
	if p.Storm {
		c.progress("dropping all %d and reconnecting them at once ...", len(sessions))
		closeAll(sessions)
		sessions, storm, err := phase(p.Clients)
		closeAll(sessions)
		if err != nil {
			return nil, err
		}
		res.Storm = &storm
	} else {
		closeAll(sessions)
	}
	return res, s.alive()
}
