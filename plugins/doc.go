// Package plugins is pearld's side of out-of-process plugins: the
// `plugin` source type, which runs a plugin binary built with the sdk and
// polls the pipeline's devices through it, and the discovery behind
// `pearld plugins`.
//
//	[sources.quality]
//	type        = "plugin"
//	plugin      = "stream_quality"   # binary in --plugins-dir (default bin/plugins); required
//	devices     = ["*"]              # names or globs of [devices]; default all
//	interval    = "5s"               # default 5s: between polls of a device
//	max_backoff = "60s"              # default 60s: longest wait while a device fails
//	sha256      = "9f86d0..."        # optional: the binary's SHA-256; another binary is refused
//	threshold   = 0.1                # the plugin's own keys, checked against its declaration
//
// Init finds the binary, checks its pin, starts it (hashicorp/go-plugin,
// gRPC only, automatic mTLS, the handshake of sdk/proto) to read its
// declaration and check the plugin's keys - an unknown key or a bad value
// is reported at its line by `pearld validate` - and stops it. Run starts
// the plugin again, configures it and polls every device from its own
// goroutine: one poll in flight per device, backoff with jitter while the
// device fails.
//
// Supervision: when the plugin process dies (or three polls of a device
// in a row miss their deadline), Run returns an error and the engine
// restarts the source with backoff; the rest of the pipeline keeps
// running, /status shows the source as restarting with the cause (a panic
// at start is quoted from the plugin's stderr), and
// pearld_component_restarts_total and pearld_plugin_up say so. A plugin
// never outlives pearld: on Linux it is started with a parent-death signal
// (SIGKILL) from an OS thread that lives as long as the plugin, so even
// kill -9 of pearld takes it down, and the sdk exits a plugin whose parent
// is gone. Stopping never hangs on a stuck plugin: it is asked to exit,
// then killed with its process group.
//
// A plugin's structured logs become pearld's records at their level,
// tagged with the pipeline, component and plugin; what it prints to stdout
// or stderr outside its logger is logged as a warning (rate-limited) and
// counted in pearld_plugin_output_lines_total, never fatal, even before
// the handshake. The plugin gets a minimal environment (PATH, HOME,
// TMPDIR, TZ, locale, Go runtime variables and PEARLD_PLUGIN_*), not
// pearld's secrets.
//
// Metrics, labelled by pipeline and component: pearld_plugin_starts_total,
// pearld_plugin_up, pearld_plugin_polls_total{result},
// pearld_plugin_poll_duration_seconds, pearld_plugin_output_lines_total{stream},
// pearld_plugin_rejected_events_total.
package plugins
