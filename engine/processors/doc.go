// Package processors holds the engine's own pipeline stages: dedup, which
// turns repeated observations into changes, and ttl_cache, which keeps the
// latest event of every key for sinks to answer new subscribers from.
package processors
