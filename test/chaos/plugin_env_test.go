package chaos

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/pearld/pearld/engine"
	"github.com/pearld/pearld/sources/pearl/pearltest"
)

// TestPluginEnvironment checks, from outside, what a plugin process gets
// of pearld's environment: only what it needs to run (PATH, HOME, TMPDIR,
// TZ, locale, Go runtime settings), the go-plugin handshake and the
// PEARLD_PLUGIN_* variables - never pearld's secrets (JWT_SECRET, device
// passwords, anything else). It reads /proc/PID/environ of the running
// stream_quality process.
func TestPluginEnvironment(t *testing.T) {
	t.Setenv("JWT_SECRET", secret)
	t.Setenv("PEARL_PASSWORD", "device-password-canary")
	t.Setenv("REDIS_PASSWORD", "redis-password-canary")
	t.Setenv("PEARLD_PLUGIN_CHAOS", "passed-on")

	dev := pearltest.NewDevice(pearltest.Options{Password: "device-password-canary"})
	srv := pearltest.NewServer(dev)
	defer srv.Close()
	file := filepath.Join(t.TempDir(), "env.toml")
	writeFile(t, file, fmt.Sprintf(`
[devices.d01]
address  = %q
password = "${PEARL_PASSWORD}"

[sources.quality]
type     = "plugin"
plugin   = "stream_quality"
interval = "200ms"

[sinks.live]
type   = "websocket"
inputs = ["quality"]
listen = "127.0.0.1:%d"
`, srv.URL, freePort(t)))
	e := engine.New(engine.Options{Logger: newLogger(&logBuffer{}), PluginsDir: pluginsDir})
	if err := e.Start([]string{file}); err != nil {
		t.Fatal(err)
	}
	defer func() {
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		defer cancel()
		if err := e.Stop(ctx); err != nil {
			t.Errorf("stopping: %v", err)
		}
	}()
	var pids []int
	if !waitFor(20*time.Second, func() bool {
		pids = childPIDs("stream_quality")
		return len(pids) == 1 && dev.Requests("/api/v2.0/channels") > 0
	}) {
		t.Fatalf("no polling stream_quality process: %v", pids)
	}
	raw, err := os.ReadFile("/proc/" + strconv.Itoa(pids[0]) + "/environ")
	if err != nil {
		t.Fatal(err)
	}
	allowed := func(k string) bool {
		switch k {
		case "PATH", "HOME", "TMPDIR", "TZ", "LANG", "GOTRACEBACK", "GODEBUG", "GOMAXPROCS", "GOMEMLIMIT",
			"PEARLD_PLUGIN": // the handshake's magic cookie
			return true
		}
		return strings.HasPrefix(k, "LC_") || strings.HasPrefix(k, "PEARLD_PLUGIN_") || strings.HasPrefix(k, "PLUGIN_")
	}
	seen := map[string]string{}
	for kv := range bytes.SplitSeq(bytes.TrimRight(raw, "\x00"), []byte{0}) {
		k, v, _ := strings.Cut(string(kv), "=")
		seen[k] = v
		if !allowed(k) {
			t.Errorf("the plugin got %s from pearld's environment", k)
		}
		if strings.Contains(v, "canary") || strings.Contains(v, secret) {
			t.Errorf("the plugin got a secret in %s", k)
		}
	}
	if seen["PEARLD_PLUGIN_CHAOS"] != "passed-on" {
		t.Errorf("PEARLD_PLUGIN_CHAOS was not passed on: %v", seen)
	}
	if _, ok := seen["PATH"]; !ok && os.Getenv("PATH") != "" {
		t.Errorf("PATH was not passed on")
	}
}
