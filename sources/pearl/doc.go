// Package pearl watches Epiphan Pearl video encoders through their REST API
// v2.0 (firmware 4.24.1 and later).
//
// It has three parts. Client is the API client of one device: the only
// place requests to that device are made, shared by every component of a
// pipeline through ClientFor, so that a device never has more than
// MaxInFlight requests in flight however many sources and sinks use it.
// The source pearl_publisher_status polls the publishers (streams) of every
// channel and emits a publisher_status event per channel whose state
// changed. The source pearl_device_health polls the system status and emits
// a device_health event when a device goes online, offline, degraded or
// fails to authenticate, and when it reboots.
//
// Both sources poll each device from its own goroutine, one poll in flight
// per device, and back off with jitter while a device fails. A control call
// (Client.StartPublisher and friends) or Client.Kick makes the pollers of
// the device poll at once, and the publisher poller then polls every
// fast_interval until its publishers settle.
//
// Example pipeline:
//
//	[devices.studio-a]
//	address  = "https://192.168.1.100"
//	username = "admin"
//	password = "${PEARL_PASSWORD}"
//	insecure_skip_verify = true   # self-signed certificate
//	timeout  = "5s"
//
//	[sources.publishers]
//	type          = "pearl_publisher_status"
//	devices       = ["*"]    # names or globs of [devices]; default all
//	interval      = "5s"     # default 5s
//	fast_interval = "250ms"  # default 250ms: after a control call, while starting
//	max_backoff   = "60s"    # default 60s: longest wait while a device fails
//
//	[sources.health]
//	type      = "pearl_device_health"
//	devices   = ["*"]
//	interval  = "10s"  # default 10s
//	cpu_step  = 0      # default 0 (off): also emit when cpuload moved this many points
//	temp_step = 0      # default 0 (off): also emit when cputemp moved this many degrees
//
// Several pearld instances can share the polling of a fleet (a cluster,
// see docs/cluster.md): with lease_redis, an instance polls a device only
// while it holds the device's lease in Redis (SET NX PX, renewed every
// third of lease_ttl, released on a clean stop). The sources of a device
// share its lease. An instance that dies stops renewing; another takes the
// device over within lease_ttl, starting from the latest state the
// redis_stream sink recorded, so that the handover reports changes, not
// first observations. Kicks reach the holder from any instance.
//
//	[sources.publishers]
//	type         = "pearl_publisher_status"
//	lease_redis  = "redis://127.0.0.1:6379/0"  # default "": no leases
//	lease_ttl    = "5s"                        # default 5s, at least 1s
//	lease_prefix = "pearld:cluster"            # default "pearld:" + the pipeline's name
//
// The event data follows PROTOCOL.md; PublisherStatusData and
// DeviceHealthData are its Go form.
package pearl
