#!/usr/bin/env bash
# fuzz.sh runs every fuzz target of pearld, one after the other, and
# reports the wall and CPU time each got.
#
#   scripts/fuzz.sh [FUZZTIME] [WORKERS] [FILTER]
#
#   FUZZTIME  how long each target runs (go test -fuzztime): 60s, 5m, or
#             10000x for a number of inputs. Default 60s ($FUZZTIME).
#   WORKERS   fuzzing processes per target (go test -parallel). Default:
#             Go's default, GOMAXPROCS ($FUZZ_WORKERS).
#   FILTER    an extended regexp; only targets whose "pkg Target" matches
#             run. Default: all.
#
# make fuzz runs `scripts/fuzz.sh 60s`; make test may run `scripts/fuzz.sh
# 10s` for a short pass (the seed corpora already run in plain go test).
# A finding stops that target, is written by go test to the package's
# testdata/fuzz/FuzzXxx/ (commit it with the fix: it becomes a seed), and
# makes the script exit 1 after the other targets ran.
set -euo pipefail

cd "$(dirname "$0")/.."
fuzztime=${1:-${FUZZTIME:-60s}}
workers=${2:-${FUZZ_WORKERS:-}}
filter=${3:-.}

# package (relative to the module root) and target.
targets=(
	"sinks/websocket FuzzClientFrame"
	"engine FuzzLoad"
	"engine FuzzExpandVars"
	"engine/auth FuzzTokenFromRequest"
	"engine/auth FuzzVerify"
	"sources/pearl FuzzDecode"
)

module=$(go list -m)
cache="$(go env GOCACHE)/fuzz"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

failed=()
printf '%-16s %-22s %10s %10s  %s\n' package target wall cpu result
for t in "${targets[@]}"; do
	read -r pkg target <<<"$t"
	[[ "$t" =~ $filter ]] || continue
	bin="$tmp/${pkg//\//_}.test"
	if [[ ! -x "$bin" ]]; then
		go test -c -o "$bin" "./$pkg"
	fi
	args=(-test.run='^$' -test.fuzz="^${target}\$" -test.fuzztime="$fuzztime"
		-test.fuzzcachedir="$cache/$module/$pkg")
	if [[ -n "$workers" ]]; then
		args+=(-test.parallel="$workers")
	fi
	log="$tmp/$target.log"
	start=$(date +%s)
	# CPU time (user+system) of the test binary and its fuzzing workers.
	TIMEFORMAT='%U %S'
	result=ok
	{ time (cd "$pkg" && "$bin" "${args[@]}" >"$log" 2>&1); } 2>"$tmp/time" || result=FAIL
	wall=$(($(date +%s) - start))
	read -r user sys <"$tmp/time"
	cpu=$(awk -v u="$user" -v s="$sys" 'BEGIN { printf "%.1fmin", (u + s) / 60 }')
	execs=$(grep -o 'execs: [0-9]*' "$log" | tail -1 | cut -d' ' -f2 || true)
	printf '%-16s %-22s %9ss %10s  %s (%s execs)\n' "$pkg" "$target" "$wall" "$cpu" "$result" "${execs:-0}"
	if [[ $result != ok ]]; then
		failed+=("$pkg $target")
		sed -n '/--- FAIL/,$p' "$log" | head -40
	fi
done

if ((${#failed[@]} > 0)); then
	echo "findings in: ${failed[*]} (inputs in testdata/fuzz/)" >&2
	exit 1
fi
