// Package chaos holds pearld's whole-system tests under adverse
// conditions: the chaos test, which runs a production-shaped pipeline
// in-process against a simulated fleet while clients disconnect and
// resume, devices fail and reboot, the plugin process is killed and the
// pipelines are reloaded, and then checks that no client missed, repeated
// or reordered a change, that every view of the latest state equals the
// devices' real state, and that goroutines and memory return to their
// level; and the slow-consumer test, which shows that a client that stops
// reading is cut off at its send queue limit without moving the delivery
// latency of the others.
//
// The tests are part of plain `go test ./...` (and `make test`, with
// -race); each is bounded to about two minutes. They build the shipped
// stream_quality plugin into a temporary directory first.
package chaos
