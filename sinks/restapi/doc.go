// Package restapi is the `rest_events` sink: the REST API of PROTOCOL.md
// that existing dashboards call next to the WebSocket hub. It keeps the
// events it is written in a bounded, time-limited store and serves them,
// serves the latest known publisher state of a channel from memory (never
// from the device), and starts and stops publishers through the
// pipeline's shared device clients.
//
// Routes (all JSON):
//
//	GET    /api/realtime/events?device=&channel=&type=&since=&limit=   read
//	GET    /api/realtime/stats                                         read
//	GET    /api/realtime/health                                        read
//	DELETE /api/realtime/events                                        admin
//	POST   /api/realtime/cleanup                                       admin
//	GET    /api/device-state/devices/{device}/channels/{channel}/publishers/status   read
//	POST   /api/devices/{device}/channels/{channel}/publishers/start|stop            control
//	POST   /api/devices/{device}/channels/{channel}/publishers/{publisher}/control/start|stop
//
// Every route needs a JWT, checked like the hub's (health included:
// PROTOCOL.md says reads need a token): read access for reads, admin for
// clear and cleanup, publisher_control or admin for control; 401 without a
// valid token, 403 without the permission. A token's devices claim limits
// what it sees: lists and counts leave other devices out, and a route that
// names another device answers 403, before it says whether the device
// exists. Errors have one shape:
// {"error":"Not Found","code":"unknown_device","message":"..."}, where
// error is the HTTP status text (for 401 and 403 the protocol's
// "Authentication required" and "Insufficient permissions"), code is
// stable for programs and message is for people. Request bodies are never
// read.
//
// Control is asynchronous on a Pearl: the device accepts a command and
// applies it later. The sink answers as soon as the device accepted; the
// device client then kicks the device's pollers, which poll at once and
// then fast until the publishers settle, so a dashboard sees starting and
// started over the WebSocket within about a second, whatever the poll
// interval.
//
// Example pipeline table, every key with its default:
//
//	[sinks.api]
//	type            = "rest_events"
//	inputs          = ["latest"]   # a ttl_cache upstream serves the latest state
//	listen          = ":3446"      # the hub's address: one server for both
//	jwt_secret      = "${JWT_SECRET}"  # default: the JWT_SECRET environment variable
//	algorithms      = ["HS256"]
//	public_keys     = []
//	issuer          = ""           # unchecked
//	audience        = ""           # unchecked
//	leeway          = "30s"
//	max_events      = 1000
//	ttl             = "300s"
//	control_timeout = "10s"
//	allowed_origins = []           # any origin, without credentials
package restapi
