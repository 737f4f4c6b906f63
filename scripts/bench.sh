#!/bin/sh
# Runs pearl-bench against a freshly built pearld: `make bench` runs
# `scripts/bench.sh all`, a short run of every scenario.
#
#   scripts/bench.sh [SCENARIO] [pearl-bench flags...]
#
# The server is pinned to CPU 0 and the load generator to another CPU when
# the machine has two or more and taskset exists. Each result is printed
# and appended as a JSON line to $BENCH_OUT (default bin/bench.jsonl);
# BENCHMARKS.md says how to read them and records past figures.
set -eu
cd "$(dirname "$0")/.."

scenario=${1:-all}
[ $# -gt 0 ] && shift

mkdir -p bin
go build -o bin/ ./cmd/pearld ./cmd/pearl-bench

pin=""
if [ "$(nproc)" -ge 2 ] && command -v taskset >/dev/null 2>&1; then
	pin="-pin 0"
fi
# shellcheck disable=SC2086 # $pin is empty or two words
exec ./bin/pearl-bench "$scenario" -pearld bin/pearld $pin -out "${BENCH_OUT:-bin/bench.jsonl}" "$@"
