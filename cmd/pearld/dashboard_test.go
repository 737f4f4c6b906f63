package main

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
)

// chromiumPath is Debian's Chromium; scripts/ensure-chromium.sh installs it.
const chromiumPath = "/usr/bin/chromium"

// dashboardSecret signs the demo's tokens in TestDashboard, so that a
// token stays valid across a restart of pearld.
const dashboardSecret = "a-dashboard-test-secret-of-at-least-32-bytes"

// pageState reads what the page shows for a channel: the seq of the
// update it rendered and each publisher's state.
const pageStateJS = `(() => {
  const out = {};
  for (const ch of document.querySelectorAll('[data-device] [data-channel]')) {
    const d = ch.closest('[data-device]').dataset.device;
    const states = {};
    for (const p of ch.querySelectorAll('[data-publisher][data-state]')) states[p.dataset.publisher] = p.dataset.state;
    out[d + '/' + ch.dataset.channel] = { seq: Number(ch.dataset.seq || 0), source: ch.dataset.source || '', states };
  }
  return out;
})()`

type pageChannel struct {
	Seq    uint64            `json:"seq"`
	Source string            `json:"source"`
	States map[string]string `json:"states"`
}

// dashPage drives the page in Chromium.
type dashPage struct {
	t   *testing.T
	ctx context.Context
}

func (d *dashPage) run(what string, actions ...chromedp.Action[chromedp.Void]) {
	d.t.Helper()
	ctx, cancel := context.WithTimeout(d.ctx, 30*time.Second)
	defer cancel()
	if err := chromedp.Do(ctx, actions...); err != nil {
		d.t.Fatalf("%s: %v", what, err)
	}
}

// evalJS evaluates a JavaScript expression in the page.
func evalJS[T any](d *dashPage, js string) T {
	d.t.Helper()
	ctx, cancel := context.WithTimeout(d.ctx, 30*time.Second)
	defer cancel()
	v, err := chromedp.Run(ctx, chromedp.Evaluate[T](js))
	if err != nil {
		d.t.Fatalf("evaluating %s: %v", js, err)
	}
	return v
}

// waitFor polls a JavaScript condition until it holds, failing after max.
func (d *dashPage) waitFor(what, js string, max time.Duration) {
	d.t.Helper()
	deadline := time.Now().Add(max)
	for {
		if evalJS[bool](d, js) {
			return
		}
		if time.Now().After(deadline) {
			state := evalJS[string](d, `document.getElementById('connection').dataset.state`)
			d.t.Fatalf("timed out after %s waiting for %s (connection %s)", max, what, state)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func (d *dashPage) waitState(state string, max time.Duration) {
	d.t.Helper()
	d.waitFor("the page to show "+state, fmt.Sprintf(`document.getElementById('connection').dataset.state === %q`, state), max)
}

func (d *dashPage) channels() map[string]pageChannel {
	d.t.Helper()
	return evalJS[map[string]pageChannel](d, pageStateJS)
}

// matchServer waits until the page has shown, for every channel and at
// the same seq as the server, exactly the publisher states the server
// reports. The simulator keeps changing states, so each channel is
// compared at an instant when page and server hold the same seq, not all
// channels at one instant; equal seqs with different states fail at once.
func (d *dashPage) matchServer(api, token string, wantChannels int, max time.Duration) map[string]pageChannel {
	d.t.Helper()
	deadline := time.Now().Add(max)
	matched := map[string]bool{}
	for {
		page := d.channels()
		mismatch := ""
		if len(page) < wantChannels {
			mismatch = fmt.Sprintf("the page shows %d channels, want %d", len(page), wantChannels)
		}
		for key, pc := range page {
			if matched[key] {
				continue
			}
			dev, ch, _ := strings.Cut(key, "/")
			srv, ok := serverState(d.t, api, token, dev, ch)
			switch {
			case !ok:
				mismatch = key + ": the server does not answer"
			case pc.Seq != srv.seq:
				mismatch = fmt.Sprintf("%s: page at seq %d, server at %s", key, pc.Seq, srv)
			case fmt.Sprint(pc.States) != fmt.Sprint(srv.states):
				d.t.Fatalf("%s: at seq %d the page shows %v, the server %v", key, pc.Seq, pc.States, srv.states)
			default:
				matched[key] = true
			}
		}
		if mismatch == "" && len(matched) >= wantChannels {
			return page
		}
		if time.Now().After(deadline) {
			d.t.Fatalf("the page did not catch up with the server within %s: %s", max, mismatch)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// waitChannel waits until the server's state of a channel has met a
// condition, and the page then shows the server's state of that channel
// at the same seq. The simulator may change the channel again meanwhile,
// so the page must catch up with the server, wherever it has moved to.
func (d *dashPage) waitChannel(api, token, device, channel string, cond func(pubState) bool, max time.Duration) pubState {
	d.t.Helper()
	deadline := time.Now().Add(max)
	key := device + "/" + channel
	met := false
	for {
		srv, ok := serverState(d.t, api, token, device, channel)
		met = met || (ok && cond(srv))
		if met && ok {
			pc := d.channels()[key]
			if pc.Seq == srv.seq && fmt.Sprint(pc.States) == fmt.Sprint(srv.states) {
				return srv
			}
		}
		if time.Now().After(deadline) {
			d.t.Fatalf("%s: the page (%+v) did not show the server's new state (%v, condition met %v) within %s", key, d.channels()[key], srv, met, max)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func (d *dashPage) screenshot(name string) string {
	d.t.Helper()
	ctx, cancel := context.WithTimeout(d.ctx, 30*time.Second)
	defer cancel()
	png, err := chromedp.Run(ctx, chromedp.FullScreenshot(100))
	if err != nil {
		d.t.Fatalf("taking a screenshot: %v", err)
	}
	path := filepath.Join(outputDir(d.t), name)
	if err := os.WriteFile(path, png, 0o644); err != nil {
		d.t.Fatal(err)
	}
	d.t.Logf("screenshot: %s", path)
	return path
}

// flip starts a stopped publisher or stops a running one through the
// REST control route, and waits until the page shows the server's state
// after the change.
func flip(t *testing.T, d *dashPage, api, token, device, channel, publisher string) {
	t.Helper()
	before, ok := serverState(t, api, token, device, channel)
	if !ok {
		t.Fatalf("no state of %s channel %s", device, channel)
	}
	action := "start"
	if s := before.states[publisher]; s == "started" || s == "starting" {
		action = "stop"
	}
	postControl(t, api, token, device, channel, publisher, action)
	d.waitChannel(api, token, device, channel, func(s pubState) bool {
		st := s.states[publisher]
		if s.seq <= before.seq {
			return false
		}
		if action == "stop" {
			return st == "stopped"
		}
		return st == "started" || st == "starting"
	}, 15*time.Second)
}

// TestDashboard runs the built `pearld demo` and drives its dashboard in
// headless Chromium: the page shows the whole fleet and follows the
// server's state live, a click starts a publisher on the device, and
// across a restart of pearld the page keeps the last state while nothing
// answers, polls REST while only the WebSocket is unreachable, and is
// live again afterwards with every change made meanwhile.
func TestDashboard(t *testing.T) {
	if _, err := os.Stat(chromiumPath); err != nil {
		t.Fatalf("%s is missing: run scripts/ensure-chromium.sh (make test does)", chromiumPath)
	}
	start := time.Now()
	bin := filepath.Join(t.TempDir(), "pearld")
	if out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput(); err != nil {
		t.Fatalf("building pearld: %v\n%s", err, out)
	}
	ports := freePorts(t, 2)
	hubPort, statusPort, simBase := ports[0], ports[1], freeRange(t, 4)
	api := fmt.Sprintf("http://127.0.0.1:%d", hubPort)
	statusURL := fmt.Sprintf("http://127.0.0.1:%d", statusPort)
	demo := startDemo(t, bin, hubPort, statusPort, simBase)
	token := demo.url[strings.Index(demo.url, "#token=")+len("#token="):]
	if !strings.HasPrefix(demo.url, statusURL+"/") {
		t.Fatalf("dashboard URL %s is not on the status listener %s", demo.url, statusURL)
	}

	gate := newWSGate(t)
	allocCtx, cancelAlloc := chromedp.NewExecAllocator(context.Background(),
		chromedp.ExecPath(chromiumPath),
		chromedp.Headless, chromedp.NoSandbox, chromedp.DisableGPU, chromedp.NoFirstRun,
		chromedp.Flag("disable-quic", true),
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true),
		chromedp.UserDataDir(t.TempDir()),
		chromedp.WindowSize(1440, 1100),
		// Everything, loopback included, goes through the gate.
		chromedp.ProxyServer(gate.srv.URL),
		chromedp.Flag("proxy-bypass-list", "<-loopback>"),
	)
	defer cancelAlloc()
	ctx, cancelCtx := chromedp.NewContext(allocCtx, chromedp.WithErrorf(t.Logf))
	defer cancelCtx()
	d := &dashPage{t: t, ctx: ctx}
	// The first call starts the browser and must not have a timeout: the
	// browser lives as long as the context of that call.
	if err := chromedp.Do(ctx); err != nil {
		t.Fatalf("starting %s: %v", chromiumPath, err)
	}

	// The page: live, all four devices, every channel as the server has it.
	d.run("opening the dashboard", chromedp.Navigate(demo.url))
	d.waitState("connected-live", 15*time.Second)
	if hash := evalJS[string](d, `location.hash`); hash != "" {
		t.Errorf("the token stayed in the address bar: %q", hash)
	}
	for _, dev := range demoDevices {
		d.waitFor(dev+" with its health", fmt.Sprintf(`!!document.querySelector('[data-device=%q] [data-field=status][data-status]')`, dev), 20*time.Second)
	}
	// pearltest's layouts: 2, 3, 3 and 3 channels.
	d.matchServer(api, token, 11, 20*time.Second)
	t.Logf("live with the whole fleet after %s", time.Since(start).Round(time.Millisecond))

	// A flip made on the server is on the page at the same seq.
	flip(t, d, api, token, "studio-a", "1", "0")

	// A click on Start reaches the device.
	// The button is picked and clicked in one script: the simulator may
	// start the publisher itself at any moment, turning Start into Stop.
	okStarts := metricValue(t, statusURL, "pearld_rest_control_calls_total", `action="start"`, `result="ok"`)
	target := evalJS[[]string](d, `(() => {
  const b = [...document.querySelectorAll('[data-device] [data-channel] [data-publisher] button[data-action=start]')].find((b) => !b.disabled);
  if (!b) return [];
  const row = b.closest('[data-publisher]');
  b.click();
  return [row.closest('[data-device]').dataset.device, row.closest('[data-channel]').dataset.channel, row.dataset.publisher];
})()`)
	if len(target) != 3 {
		t.Fatal("no enabled Start button on the page")
	}
	dev, ch, pub := target[0], target[1], target[2]
	waitUntil(t, "the start call to reach the device", 10*time.Second, func() bool {
		return metricValue(t, statusURL, "pearld_rest_control_calls_total", `action="start"`, `result="ok"`) > okStarts
	})
	simPort := simBase
	for i, id := range demoDevices {
		if id == dev {
			simPort = simBase + i
		}
	}
	if st, started := devicePublisherState(t, simPort, ch, pub); !started && st != "starting" {
		t.Errorf("after the click the device reports publisher %s of %s channel %s %q, not starting or started", pub, dev, ch, st)
	}
	d.waitChannel(api, token, dev, ch, func(s pubState) bool { return s.states[pub] != "stopped" }, 10*time.Second)
	t.Logf("flip and click shown after %s", time.Since(start).Round(time.Millisecond))

	// pearld restarts: while nothing answers the page says so and keeps
	// the last state; then it is live again with the states of the new
	// run (the simulator starts over from its seed).
	shown := d.channels()
	demo.stop(t, syscall.SIGTERM)
	d.waitState("disconnected", 10*time.Second)
	if got := d.channels(); fmt.Sprint(got) != fmt.Sprint(shown) {
		t.Errorf("while disconnected the page changed from\n%v\nto\n%v", shown, got)
	}
	if !evalJS[bool](d, `document.getElementById('fleet').classList.contains('stale')`) {
		t.Error("the page does not mark the last known state as stale")
	}
	d.screenshot("dashboard-disconnected.png")
	demo = startDemo(t, bin, hubPort, statusPort, simBase)
	d.waitState("connected-live", 30*time.Second)
	d.matchServer(api, token, 11, 20*time.Second)
	t.Logf("live again after a restart after %s", time.Since(start).Round(time.Millisecond))

	// The browser can no longer open WebSockets (the gate cuts them, as a
	// proxy that does not pass them would) while pearld runs: the page
	// polls the REST API and shows changes.
	gate.block(true)
	d.waitState("fallback-http", 15*time.Second)
	flip(t, d, api, token, "studio-b", "4", "0")
	if src := d.channels()["studio-b/4"].Source; src != "http" {
		t.Errorf("in fallback the page got studio-b/4 from %q, want http", src)
	}
	d.screenshot("dashboard-fallback.png")

	// pearld restarts while WebSockets are still cut: disconnected, then
	// the fallback again with the new run's states.
	t.Logf("fallback shown after %s", time.Since(start).Round(time.Millisecond))
	demo.stop(t, syscall.SIGTERM)
	d.waitState("disconnected", 10*time.Second)
	t.Logf("pearld stopped after %s", time.Since(start).Round(time.Millisecond))
	demo = startDemo(t, bin, hubPort, statusPort, simBase)
	d.waitState("fallback-http", 20*time.Second)
	d.matchServer(api, token, 11, 20*time.Second)
	t.Logf("fallback across a restart shown after %s", time.Since(start).Round(time.Millisecond))

	// WebSockets pass again: live, with every change made meanwhile.
	flip(t, d, api, token, "lobby", "7", "0")
	gate.block(false)
	d.waitState("connected-live", 45*time.Second)
	t.Logf("live again after %s", time.Since(start).Round(time.Millisecond))
	page := d.matchServer(api, token, 11, 20*time.Second)
	flip(t, d, api, token, "studio-a", "1", "1")
	if src := d.channels()["studio-a/1"].Source; src != "websocket" {
		t.Errorf("after reconnecting the page got studio-a/1 from %q, want websocket", src)
	}
	_ = page
	shot := d.screenshot("dashboard.png")
	t.Logf("screenshot %s after %s", shot, time.Since(start).Round(time.Millisecond))

	// A read-only token gets the same page without control.
	ro, err := mintToken(dashboardSecret, "viewer", "Viewer", "", []string{"realtime_data"}, nil, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	d.run("opening the dashboard read-only", chromedp.Navigate(statusURL+"/?viewer#token="+ro))
	d.waitState("connected-live", 15*time.Second)
	d.waitFor("publisher rows", `document.querySelectorAll('[data-publisher] button').length > 0`, 15*time.Second)
	if enabled := evalJS[int](d, `[...document.querySelectorAll('[data-publisher] button')].filter((b) => !b.disabled).length`); enabled != 0 {
		t.Errorf("a read-only token sees %d enabled control buttons", enabled)
	}
	if user := evalJS[string](d, `document.getElementById('user').textContent`); !strings.Contains(user, "read-only") {
		t.Errorf("user line %q does not say read-only", user)
	}
}
