// Package redisstream runs pearld as a cluster on Redis: the instances that
// poll devices append their events to a Redis stream (the redis_stream
// sink, in sinks/redisstream), and every instance that serves clients reads
// them back (the redis_stream source, in this package). It also owns the
// layout of a pipeline's keys in Redis (Keys), which the poll leases of
// sources/pearl share.
//
// The source gives each event the Seq of its stream id: an id "ms-n" is
// seq ms*1000+n (the write script keeps n below 1000), the same on every
// instance, monotonic, exact in JavaScript. Its epoch (engine.Sequencer)
// is derived from the stream's key, so every instance reports the same
// one without asking Redis, and a client resumes on any instance. It holds
// the latest event of every key (engine.StateReader), loaded from
// PREFIX:latest:* when it starts and kept current from the stream, and
// replays a key's events from PREFIX:history:KEY (engine.Replayer) for hubs
// whose own history does not reach back far enough: a hub that started
// late, or that is behind the instance a client comes from.
//
// The stream is read with XREAD BLOCK, without a consumer group: every
// instance needs every event. A reader that falls more than max_len
// entries behind, or finds the stream restarted, resumes from the latest
// state and counts it in pearld_redis_stream_gaps_total.
//
// Example, on every instance (see pipelines/cluster.toml):
//
//	[sinks.to_stream]
//	type        = "redis_stream"
//	inputs      = ["changes"]
//	redis       = "redis://127.0.0.1:6379/0"  # required; rediss:// for TLS
//	prefix      = "pearld:cluster"            # default "pearld:" + the pipeline's name
//	max_len     = 100000                      # default: about this many events in the stream
//	history     = 100                         # default: about this many events per key, for resumes
//	history_ttl = "1h"                        # default: a key's history goes after this long without events
//	timeout     = "5s"                        # default: one write; failed writes are retried
//
//	[sources.from_stream]
//	type       = "redis_stream"
//	redis      = "redis://127.0.0.1:6379/0"
//	prefix     = "pearld:cluster"
//	data_types = ["*"]                        # default: any data type may be subscribed to
//	read_count = 500                          # default: entries per read
//
//	[sinks.live]
//	type   = "websocket"
//	inputs = ["from_stream"]
package redisstream
