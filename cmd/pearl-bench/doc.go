// Command pearl-bench is the load generator and measuring harness of
// pearld: it runs the real pearld binary as a separate process with a
// generated pipeline file, drives it from many WebSocket clients, the
// webhook ingest and simulated Pearl fleets, and reports what the server
// costs in CPU and memory and what clients see in throughput and latency.
//
// Scenarios (pearl-bench SCENARIO -h lists the flags of each):
//
//	fanout   N clients on one key, M events through the webhook at a rate:
//	         deliveries/s, latency percentiles, server CPU per delivery, loss
//	idle     memory per idle connection (RSS and Go heap) at 1k and 10k
//	connect  connect+subscribe rate, then a reconnect storm
//	poll     K simulated devices at interval I: server CPU, requests per
//	         device per interval, with and without clients watching
//	e2e      device change to client receipt, and control command to client
//	all      a short run of every scenario (make bench)
//
// Each scenario prints one JSON object on a line of its own and a one-line
// summary. With -pin CPU the server runs on that CPU (taskset) and the
// bench re-executes itself on another one, so that the load generator
// never competes with what it measures.
//
// The server binary is built from the module (go build) unless -pearld
// names one. `pearl-bench serve` runs the same engine in the bench binary
// with /debug/pprof/ on the status listener (admin token), for profiling
// the server under load until pearld itself offers that.
//
// Every client connects from its own 127.x.y.z address (all of 127/8 is
// loopback on Linux), at most -per-ip per address, so that the hub's
// per-address limit is not what is measured. Every loop is bounded in
// count and time; every process the bench starts is stopped, and every
// port closed, before it exits.
package main
