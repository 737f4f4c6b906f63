// Package pipelines ships pearld's pipeline files: pearl.toml, a
// documented production pipeline for real devices, and demo.toml, which
// `pearld demo` runs against a simulated fleet. They are embedded so the
// binary can run the demo from any directory.
package pipelines

import "embed"

// Files holds every shipped *.toml pipeline.
//
//go:embed *.toml
var Files embed.FS
