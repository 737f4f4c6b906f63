package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/pearld/pearld/engine"
)

// TestPipelineRender checks that every pipeline the scenarios generate
// loads and initialises in the engine, and holds what the scenario needs.
func TestPipelineRender(t *testing.T) {
	devices := []deviceSpec{
		{Name: "dev-0001", Address: "http://127.0.0.1:40001", Password: `p"w\d`},
		{Name: "dev.0002", Address: "http://127.0.0.1:40002", Password: ""},
	}
	tests := []struct {
		name     string
		spec     pipelineSpec
		contains []string
		absent   []string
	}{
		{
			name: "fanout: webhook to ttl_cache to websocket",
			spec: pipelineSpec{Listen: "127.0.0.1:39001", ServiceKey: "0123456789abcdef0123"},
			contains: []string{
				`type = "webhook"`, `service_keys = ["0123456789abcdef0123"]`,
				`type = "ttl_cache"`, `inputs = ["ingest"]`,
				`type = "websocket"`, `inputs = ["latest"]`, `listen = "127.0.0.1:39001"`,
			},
			absent: []string{"pearl_publisher_status", "dedup", "rest_events", "send_queue"},
		},
		{
			name: "fanout with a send queue",
			spec: pipelineSpec{Listen: "127.0.0.1:39001", ServiceKey: "0123456789abcdef0123", SendQueue: 1024, MaxConnsPerIP: 30, MaxSubscribers: 500},
			contains: []string{
				"send_queue = 1024", "max_connections_per_ip = 30", "max_subscriptions = 500",
			},
		},
		{
			name: "poll: pearl sources to dedup to ttl_cache to websocket",
			spec: pipelineSpec{Listen: "127.0.0.1:39002", Devices: devices, Interval: 5 * time.Second, DeviceTimeout: 2 * time.Second},
			contains: []string{
				"[devices.dev-0001]", `[devices."dev.0002"]`, `password = "p\"w\\d"`, `timeout = "2s"`,
				`type = "pearl_publisher_status"`, `interval = "5s"`, `type = "pearl_device_health"`,
				`type = "dedup"`, `inputs = ["publishers", "health"]`, `inputs = ["changes"]`,
			},
			absent: []string{"webhook", "rest_events", "fast_interval"},
		},
		{
			name:     "e2e: with the REST API for control",
			spec:     pipelineSpec{Listen: "127.0.0.1:39003", Devices: devices, Interval: time.Second, FastInterval: 100 * time.Millisecond, REST: true},
			contains: []string{`type = "rest_events"`, `fast_interval = "100ms"`, `interval = "1s"`},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			text, err := tt.spec.render()
			if err != nil {
				t.Fatal(err)
			}
			for _, s := range tt.contains {
				if !strings.Contains(text, s) {
					t.Errorf("pipeline lacks %q:\n%s", s, text)
				}
			}
			for _, s := range tt.absent {
				if strings.Contains(text, s) {
					t.Errorf("pipeline has %q:\n%s", s, text)
				}
			}
			file := filepath.Join(t.TempDir(), "bench.toml")
			if err := os.WriteFile(file, []byte(text), 0o600); err != nil {
				t.Fatal(err)
			}
			e := engine.New(engine.Options{
				StatusAddr: "127.0.0.1:39999",
				LookupEnv: func(k string) (string, bool) {
					if k == "JWT_SECRET" {
						return "a-test-secret-of-at-least-32-bytes!!", true
					}
					return "", false
				},
			})
			if err := e.Validate([]string{file}); err != nil {
				t.Fatalf("the engine refuses the pipeline: %v\n%s", err, text)
			}
		})
	}
}

func TestPipelineRenderErrors(t *testing.T) {
	for name, spec := range map[string]pipelineSpec{
		"no listen": {ServiceKey: "0123456789abcdef0123"},
		"no source": {Listen: "127.0.0.1:1"},
	} {
		if _, err := spec.render(); err == nil {
			t.Errorf("%s: no error", name)
		}
	}
}

func TestTOMLQuoting(t *testing.T) {
	tests := []struct{ in, str, key string }{
		{"plain", `"plain"`, "plain"},
		{"dev-1_a", `"dev-1_a"`, "dev-1_a"},
		{"192.168.1.100", `"192.168.1.100"`, `"192.168.1.100"`},
		{`a"b\c`, `"a\"b\\c"`, `"a\"b\\c"`},
		{"tab\there\n", `"tab\u0009here\u000A"`, `"tab\u0009here\u000A"`},
		{"", `""`, `""`},
	}
	for _, tt := range tests {
		if got := tomlString(tt.in); got != tt.str {
			t.Errorf("tomlString(%q) = %s, want %s", tt.in, got, tt.str)
		}
		if got := tomlKey(tt.in); got != tt.key {
			t.Errorf("tomlKey(%q) = %s, want %s", tt.in, got, tt.key)
		}
	}
}
