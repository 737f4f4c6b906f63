package pearl

import (
	"strings"
	"testing"
	"time"

	"github.com/pearld/pearld/engine"
	"github.com/pearld/pearld/sources/pearl/pearltest"
)

// TestFaults runs both sources against a device that fails in every way
// NOTES.md lists. While it fails, health reports it with a useful message
// and publisher_status emits nothing, though a publisher changes; once it
// recovers, health is online again and publisher_status reports exactly
// the change it missed.
func TestFaults(t *testing.T) {
	tests := []struct {
		name    string
		https   bool
		timeout time.Duration
		set     func(*pearltest.Device, *pearltest.Server)
		clear   func(*pearltest.Device, *pearltest.Server)
		status  string
		msg     string
	}{
		{name: "slow beyond the timeout", timeout: 100 * time.Millisecond, set: func(d *pearltest.Device, _ *pearltest.Server) {
			d.SetFaultDelay(time.Second)
			d.SetFault(pearltest.FaultSlow)
		}, status: HealthOffline, msg: "device unavailable: no answer within 100ms"},
		{name: "401 with WWW-Authenticate", set: fault(pearltest.FaultUnauthorized),
			status: HealthAuthFailed, msg: "unauthorized (HTTP 401): wrong username or password"},
		{name: "password changed on the device", set: func(d *pearltest.Device, _ *pearltest.Server) { d.SetPassword("changed") },
			clear:  func(d *pearltest.Device, _ *pearltest.Server) { d.SetPassword("secret") },
			status: HealthAuthFailed, msg: "HTTP 401"},
		{name: "403", set: fault(pearltest.FaultForbidden), status: HealthAuthFailed, msg: "forbidden (HTTP 403)"},
		{name: "503 HTML while booting", set: fault(pearltest.FaultUnavailable), status: HealthOffline,
			msg: "HTTP 503 Service Unavailable): booting or overloaded"},
		{name: "garbage", set: fault(pearltest.FaultGarbage), status: HealthOffline, msg: "bad response: not JSON"},
		{name: "truncated", set: fault(pearltest.FaultTruncated), status: HealthOffline, msg: "bad response: truncated JSON"},
		{name: "empty body", set: fault(pearltest.FaultEmpty), status: HealthOffline, msg: "bad response: empty body"},
		{name: "HTML with 200", set: fault(pearltest.FaultHTML), status: HealthOffline, msg: "HTML page where JSON was expected"},
		{name: "200 with status error", set: fault(pearltest.FaultNotOK), status: HealthOffline,
			msg: `device answered "error": Internal error`},
		{name: "connection refused", set: func(_ *pearltest.Device, s *pearltest.Server) { s.SetRefused(true) },
			clear:  func(_ *pearltest.Device, s *pearltest.Server) { s.SetRefused(false) },
			status: HealthOffline, msg: "connection refused"},
		{name: "firmware older than 4.24.1", set: fault(pearltest.FaultNotFoundAPI), status: HealthOffline,
			msg: "firmware older than 4.24.1 has no /api/v2.0"},
		{name: "https with a self-signed certificate", https: true, set: func(*pearltest.Device, *pearltest.Server) {},
			status: HealthOffline, msg: "set insecure_skip_verify = true"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			dev := pearltest.NewDevice(pearltest.Options{Password: "secret"})
			var srv *pearltest.Server
			if tt.https {
				srv = pearltest.NewTLSServer(dev)
			} else {
				srv = pearltest.NewServer(dev)
			}
			t.Cleanup(srv.Close)
			d := deviceConfig("a", srv)
			if tt.timeout > 0 {
				d.Timeout = engine.Duration(tt.timeout)
			}
			if tt.https {
				// The opt-in is off: the device stays offline with a
				// message saying what to do; with it, all is well.
				d.InsecureSkipVerify = false
			}
			env, reg := newEnv(t, d)
			pubs := run(t, publisherSource(20*time.Millisecond), env)
			health := run(t, healthSource(20*time.Millisecond), env)

			if tt.https {
				hd := healthData(t, health.next(t, "offline", healthIs(t, tt.status)))
				if !strings.Contains(hd.ErrorMessage, tt.msg) || hd.ErrorCount != 1 || hd.LastSeen != nil {
					t.Errorf("health: %+v", hd)
				}
				tlsFailures := `pearld_pearl_request_errors_total{device="a",path="/channels",reason="tls"}`
				eventually(t, "failed polls", func() bool { return gather(t, reg)[tlsFailures] >= 3 })
				if evs := pubs.since(); len(evs) != 0 || dev.TotalRequests() != 0 {
					t.Errorf("publisher_status events without a trusted device: %s", pubs.describe())
				}
				return
			}

			pubs.next(t, "channel 1", ofType(TypePublisherStatus, "1"))
			pubs.next(t, "channel 2", ofType(TypePublisherStatus, "2"))
			health.next(t, "online", healthIs(t, HealthOnline))

			tt.set(dev, srv)
			hd := healthData(t, health.next(t, tt.status, healthIs(t, tt.status)))
			if !strings.Contains(hd.ErrorMessage, tt.msg) {
				t.Errorf("error_message %q does not contain %q", hd.ErrorMessage, tt.msg)
			}
			if hd.ErrorCount < 1 || hd.LastSeen == nil || hd.System != nil || hd.Firmware == nil {
				t.Errorf("health while failing: %+v", hd)
			}
			if err := dev.SetPublisherStatus("1", "0", started); err != nil {
				t.Fatal(err)
			}
			n := dev.Requests("/api/v2.0/channels")
			eventually(t, "failed polls", func() bool { return dev.Requests("/api/v2.0/channels") >= n+2 || srv.Refused() })
			if evs := pubs.since(); len(evs) != 0 {
				t.Errorf("publisher_status events while failing: %s", pubs.describe())
			}

			if tt.clear != nil {
				tt.clear(dev, srv)
			} else {
				dev.SetFault(pearltest.FaultNone)
			}
			hd = healthData(t, health.next(t, "online again", healthIs(t, HealthOnline)))
			if hd.ErrorCount != 0 || hd.ErrorMessage != "" || hd.System == nil {
				t.Errorf("health after recovery: %+v", hd)
			}
			pd := publisherData(t, pubs.next(t, "missed change", ofType(TypePublisherStatus)))
			if pd.Channel != "1" || len(pd.Changes) != 1 || pd.Changes[0].Previous.State != "stopped" || pd.Changes[0].Current.State != "started" {
				t.Errorf("change after recovery: %+v", pd)
			}
			n = dev.Requests("/api/v2.0/channels")
			eventually(t, "more polls", func() bool { return dev.Requests("/api/v2.0/channels") >= n+3 })
			if evs := pubs.since(); len(evs) != 0 {
				t.Errorf("unexpected publisher_status events: %s", pubs.describe())
			}
		})
	}
}

// TestHTTPSWithOptIn polls a self-signed device with insecure_skip_verify.
func TestHTTPSWithOptIn(t *testing.T) {
	dev := pearltest.NewDevice(pearltest.Options{Password: "secret"})
	srv := pearltest.NewTLSServer(dev)
	t.Cleanup(srv.Close)
	d := deviceConfig("a", srv)
	d.InsecureSkipVerify = true
	env, _ := newEnv(t, d)
	pubs := run(t, publisherSource(20*time.Millisecond), env)
	health := run(t, healthSource(20*time.Millisecond), env)
	health.next(t, "online", healthIs(t, HealthOnline))
	pubs.next(t, "channel 1", ofType(TypePublisherStatus, "1"))
}

// TestOneDeviceDoesNotHoldUpOthers: a device that hangs until the timeout
// and one that refuses connections do not delay or stop a healthy one.
func TestOneDeviceDoesNotHoldUpOthers(t *testing.T) {
	slow, slowSrv := fakeDevice(t, pearltest.Options{})
	slow.SetFaultDelay(5 * time.Second)
	slow.SetFault(pearltest.FaultSlow)
	_, deadSrv := fakeDevice(t, pearltest.Options{})
	deadSrv.SetRefused(true)
	good, goodSrv := fakeDevice(t, pearltest.Options{})

	slowCfg := deviceConfig("slow", slowSrv)
	slowCfg.Timeout = engine.Duration(3 * time.Second)
	env, _ := newEnv(t, slowCfg, deviceConfig("dead", deadSrv), deviceConfig("good", goodSrv))
	pubs := run(t, publisherSource(20*time.Millisecond), env)

	onGood := func(ev engine.Event) bool { return ev.Device == "good" && ev.Channel == "1" }
	pubs.next(t, "good device", onGood)
	start := time.Now()
	for _, state := range []pearltest.PublisherStatus{started, stopped, started} {
		if err := good.SetPublisherStatus("1", "0", state); err != nil {
			t.Fatal(err)
		}
		pubs.next(t, "change on the good device", onGood)
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Errorf("three changes on the good device took %s: held up by the others", d)
	}
}
