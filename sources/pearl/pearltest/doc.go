// Package pearltest provides a fake Epiphan Pearl encoder that speaks the
// REST API v2.0 the way real devices do, for tests and for the simulator.
//
// A Device is an http.Handler serving /api/v2.0/...: channels with their
// publishers, publisher status and control, system status, identity and
// firmware. It checks HTTP Basic auth on every call, answers with the
// {"status":"ok","result":...} envelope, starts publishers asynchronously
// (starting, then started after a control delay), generates the fields that
// change on every poll (since, duration, SRT statistics) and can be scripted
// (SetPublisherStatus, SetSystem, Reboot, SetPassword) and made to fail the
// ways devices fail in the field (SetFault, InjectFault). It counts requests
// and the highest number of concurrent requests, so tests can check how a
// client treats a device.
//
// A Server puts a Device behind a real listener (plain HTTP or HTTPS with a
// self-signed certificate) that can refuse connections and listen again on
// the same address, as a device does while it reboots. A Fleet runs many
// Devices on consecutive ports and drives lifelike, seeded random changes;
// cmd/pearl-sim and the daemon's demo mode use it.
//
// State transitions are computed lazily from a clock (Options.Now) when the
// device is read, so a Device owns no goroutines or timers; only Servers
// and Fleets do, and their Close methods wait for them to end.
package pearltest
