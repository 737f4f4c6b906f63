package main

import "testing"

func TestParseMetrics(t *testing.T) {
	in := `# HELP go_goroutines Number of goroutines that currently exist.
# TYPE go_goroutines gauge
go_goroutines 2012
go_memstats_heap_inuse_bytes 1.2582912e+07
pearld_websocket_messages_sent_total{component="live",pipeline="bench"} 1500
pearld_websocket_messages_sent_total{component="live2",pipeline="b}{\"x"} 500
pearld_websocket_connections{pipeline="bench"} 3 1700000000000
`
	got, err := parseMetrics([]byte(in))
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]float64{
		"go_goroutines":                        2012,
		"go_memstats_heap_inuse_bytes":         12582912,
		"pearld_websocket_messages_sent_total": 2000,
		"pearld_websocket_connections":         3,
	}
	for k, v := range want {
		if got[k] != v {
			t.Errorf("%s = %v, want %v", k, got[k], v)
		}
	}
	for _, bad := range []string{"x{a=\"1\" 3\n", "x\n", "x abc\n"} {
		if _, err := parseMetrics([]byte(bad)); err == nil {
			t.Errorf("no error for %q", bad)
		}
	}
}
