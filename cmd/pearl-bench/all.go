package main

import (
	"context"
	"flag"
	"fmt"
	"time"
)

// allFlags is `pearl-bench all`: a short run of every scenario, each with
// a fresh server, as `make bench` runs it.
func allFlags(fs *flag.FlagSet) func(context.Context, *common) error {
	skipIdle10k := fs.Bool("no-10k", false, "measure idle memory at 1k connections only")
	return func(ctx context.Context, c *common) error {
		steps := []struct {
			name string
			run  func() error
		}{
			{"fanout at 100 msg/s", func() error {
				p := fanoutParams{Clients: 1000, Events: 1000, Rate: 100, Window: 32, Payload: 100, PerIP: 20, Parallel: 64, Warmup: 20, Drain: Dur(5 * time.Second)}
				r, err := runFanout(ctx, c, p)
				if err != nil {
					return err
				}
				return c.report(Result{Scenario: "fanout", Params: structParams(p), Results: r, Summary: r.summary(p)})
			}},
			{"fanout unthrottled", func() error {
				p := fanoutParams{Clients: 1000, Events: 3000, Rate: 0, Window: 32, Payload: 100, PerIP: 20, Parallel: 64, Warmup: 20, Drain: Dur(5 * time.Second)}
				r, err := runFanout(ctx, c, p)
				if err != nil {
					return err
				}
				return c.report(Result{Scenario: "fanout", Params: structParams(p), Results: r, Summary: r.summary(p)})
			}},
			{"idle", func() error {
				p := idleParams{Counts: []int{1000, 10000}, Keys: 10, PerIP: 20, Parallel: 64, Settle: Dur(3 * time.Second)}
				if *skipIdle10k {
					p.Counts = p.Counts[:1]
				}
				r, err := runIdle(ctx, c, p)
				if err != nil {
					return err
				}
				s := ""
				for i, x := range r {
					if i > 0 {
						s += "; "
					}
					s += x.summary()
				}
				return c.report(Result{Scenario: "idle", Params: structParams(p), Results: r, Summary: s})
			}},
			{"connect", func() error {
				p := connectParams{Clients: 2000, Parallel: 64, PerIP: 20, Retries: 5, Storm: true}
				r, err := runConnect(ctx, c, p)
				if err != nil {
					return err
				}
				return c.report(Result{Scenario: "connect", Params: structParams(p), Results: r, Summary: r.summary()})
			}},
			{"poll", func() error {
				p := pollParams{Devices: 2000, Interval: Dur(5 * time.Second), Measure: 2, Changes: true, Clients: 100, Keys: 10, PerIP: 20, Seed: 1}
				r, err := runPoll(ctx, c, p)
				if err != nil {
					return err
				}
				return c.report(Result{Scenario: "poll", Params: structParams(p), Results: r, Summary: r.summary(p)})
			}},
			{"e2e", func() error {
				p := e2eParams{Devices: 50, Interval: Dur(5 * time.Second), Rounds: 2, Controls: 20, PerIP: 20, Seed: 1}
				r, err := runE2E(ctx, c, p)
				if err != nil {
					return err
				}
				return c.report(Result{Scenario: "e2e", Params: structParams(p), Results: r, Summary: r.summary(p)})
			}},
		}
		for _, st := range steps {
			fmt.Fprintf(c.stderr, "== %s\n", st.name)
			if err := st.run(); err != nil {
				return fmt.Errorf("%s: %w", st.name, err)
			}
		}
		return nil
	}
}
