package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"strings"
	"testing"
	"time"
)

// serveEnv makes the test binary act as `pearl-bench serve`, so that the
// smoke test runs the server without building pearld (linking it takes
// long on a busy machine); the engine and components are the same.
const serveEnv = "PEARL_BENCH_TEST_SERVE"

func TestMain(m *testing.M) {
	if os.Getenv(serveEnv) == "1" && len(os.Args) > 1 && os.Args[1] == "serve" {
		if err := cmdServe(os.Args[2:], os.Stderr); err != nil {
			fmt.Fprintln(os.Stderr, "serve:", err)
			os.Exit(1)
		}
		os.Exit(0)
	}
	os.Exit(m.Run())
}

// TestSmoke runs tiny versions of the fanout and idle scenarios against the
// engine in a separate process: a few clients, a few events. It checks that the
// scenarios work end to end, never how fast.
func TestSmoke(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	var stdout, stderr bytes.Buffer
	t.Setenv(serveEnv, "1")
	c := &common{pin: -1, self: true, stdout: &stdout, stderr: &stderr, command: "test"}

	fp := fanoutParams{Clients: 3, Events: 5, Rate: 0, Window: 2, Payload: 10, PerIP: 2, Parallel: 2, Warmup: 2, Drain: Dur(5 * time.Second)}
	fr, err := runFanout(ctx, c, fp)
	if err != nil {
		t.Fatalf("fanout: %v\n%s", err, stderr.String())
	}
	if fr.Connected != 3 || fr.Delivered != 15 || fr.Expected != 15 || fr.ClientsDropped != 0 || fr.Latency.Count != 15 {
		t.Fatalf("fanout: %+v", fr)
	}
	if err := c.report(Result{Scenario: "fanout", Params: structParams(fp), Results: fr, Summary: fr.summary(fp)}); err != nil {
		t.Fatal(err)
	}
	line, _, _ := strings.Cut(stdout.String(), "\n")
	var got Result
	if err := json.Unmarshal([]byte(line), &got); err != nil {
		t.Fatalf("fanout printed no JSON line: %v\n%s", err, stdout.String())
	}
	if got.Scenario != "fanout" || got.Machine.CPUs < 1 || got.Params["clients"] != float64(3) {
		t.Fatalf("fanout JSON: %s", line)
	}

	ip := idleParams{Counts: []int{4}, Keys: 2, PerIP: 2, Parallel: 2, Settle: Dur(100 * time.Millisecond)}
	ir, err := runIdle(ctx, c, ip)
	if err != nil {
		t.Fatalf("idle: %v\n%s", err, stderr.String())
	}
	if len(ir) != 1 || ir[0].Connections != 4 || ir[0].RSSAfter <= 0 {
		t.Fatalf("idle: %+v", ir)
	}
}
