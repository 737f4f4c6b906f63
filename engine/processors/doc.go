// Package processors holds the engine's own pipeline stages: dedup, which
// turns repeated observations into changes; ttl_cache, which keeps the
// latest event of every key for sinks to answer new subscribers from; and
// batch, which groups events so sinks write them with fewer calls.
package processors
