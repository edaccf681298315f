#!/usr/bin/env bash
# test_bench.sh: how long `meshrun test` takes for scenarios that cover minutes and
# hours of virtual time, beside the virtual time they cover and the goal (well under
# a second of wall time each).
#
#   bench/test_bench.sh [--smoke] [MESHRUN]
#
# MESHRUN defaults to build/tools/meshrun. Prints a table; exits 0 whether or not
# the goal is met, 1 when a scenario could not run or failed.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
runs=5
meshrun=""
for arg in "$@"; do
  case "$arg" in
    --smoke) runs=1 ;;
    -h|--help) sed -n '2,9p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) meshrun="$arg" ;;
  esac
done
meshrun="${meshrun:-build/tools/meshrun}"
tmp="$(mktemp -d "${TMPDIR:-/tmp}/meshrun-test-bench.XXXXXX")"
trap 'rm -rf "$tmp"' EXIT

cat >"$tmp/hour.mesh" <<'MESH'
node clock {
    every 1s -> send tick to counter/ticks
}
node counter at localhost:9000 {
    pin led = out gpiochip0 17
    on ticks -> { toggle led; ack "ok" }
}
test "an hour of a one-second timer" {
    advance 1h
    expect counter received 3600 on ticks
}
MESH

# median wall time in ms of `meshrun test FILE`, over $runs runs
measure() {
  local file=$1 times=()
  for _ in $(seq "$runs"); do
    local start end
    start=$(date +%s%N)
    if ! "$meshrun" test "$file" >"$tmp/out.txt" 2>&1; then
      echo "test_bench: meshrun test $file failed:" >&2; cat "$tmp/out.txt" >&2; exit 1
    fi
    end=$(date +%s%N)
    times+=($(( (end - start) / 1000 )))
  done
  printf '%s\n' "${times[@]}" | sort -n | awk '{a[NR]=$1} END {printf "%.1f", a[int((NR+1)/2)]/1000}'
}

arduino=$(measure "$here/../topologies/arduino.mesh")
hour=$(measure "$tmp/hour.mesh")
printf '%-44s %12s %16s %10s\n' "scenario" "wall (ms)" "virtual time" "goal"
printf '%-44s %12s %16s %10s\n' "topologies/arduino.mesh (3 tests)" "$arduino" "5 s" "< 1000 ms"
printf '%-44s %12s %16s %10s\n' "an hour of a 1 s timer (3,600 messages)" "$hour" "3,600 s" "< 1000 ms"
