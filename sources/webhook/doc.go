// Package webhook is the `webhook` source: event ingest for the backends
// of the system pearld replaces, which POST events to it instead of
// polling anything.
//
// A request to POST /webhook/event (on the engine's status listener unless
// `listen` says otherwise) carries one event, or a JSON array of up to
// max_events of them:
//
//	{"type": "encoder_alarm", "device": "studio-z", "channel": 1,
//	 "publisherId": "0", "data": {...}, "timestamp": "2026-11-25T20:31:12.345Z"}
//
// type follows the hub's data type rule ([A-Za-z0-9._-]{1,64}); device,
// channel and publisherId its id rule ([A-Za-z0-9._:-]{1,64}, channel and
// publisherId also as non-negative integers); data must be an object;
// timestamp (RFC 3339) defaults to the time of receipt. Devices need not
// be in the pipeline's [devices], and any data type is accepted unless
// data_types limits them; the source declares "*" as its data types so
// that a hub downstream accepts subscriptions to any of them. An event's
// Hash covers its compacted data, so dedup drops exact repeats.
//
// The endpoint is never open: a request needs a configured service key in
// X-Service-Key (compared in constant time) or a JWT granting `admin`
// (whose `devices` claim, when present, limits the devices it may post
// for); Init refuses a configuration with neither. Refusals are JSON
// bodies {"status":"error","error":reason,"message":text} with 405, 401,
// 403, 415, 413, 408 or 400, and nothing of a refused request is emitted:
// an array is taken whole or not at all. Accepted requests get 202
// {"status":"accepted","events":n} once the source has taken their events
// to emit, in order (the seq the engine assigns is not known yet). The
// next request waits until they are emitted: when the pipeline applies
// back-pressure for longer than `timeout`, the answer is 503 with
// Retry-After, and nothing of that request was emitted.
package webhook
