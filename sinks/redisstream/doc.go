// Package redisstream is the redis_stream sink: it appends the events of
// the instances that poll devices to a pipeline's stream in Redis, where
// the redis_stream source of every instance reads them (a pearld cluster,
// see pipelines/cluster.toml and docs/cluster.md). Each batch is one
// atomic script call that also appends every event to its key's history
// (for clients that resume on another instance) and records it as its
// key's latest state (for new subscribers, and for the instance that takes
// a device's poll lease over). The layout of the keys is described in
// sources/redisstream, which reads them.
package redisstream
