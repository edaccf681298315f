#!/usr/bin/env bash
# `meshrun test` limits: a test that would run too many timer firings (`every 1us` and
# `advance 1h` is 3.6e9 of them) or too long in wall time fails fast, says which limit,
# where in the scenario and how to raise it; --max-steps and --timeout move the limits.
# Usage: limits_test.sh MESHRUN   (run from anywhere; writes its files to a temp dir)
set -u
. "$(dirname "${BASH_SOURCE[0]}")/../lib/checks.sh"  # ok, fail, has, has_line, lacks, count
meshrun=${1:?usage: limits_test.sh MESHRUN}
case $meshrun in /*) ;; *) meshrun=$PWD/$meshrun ;; esac
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
cd "$tmp"
# run NAME WANT_STATUS MAX_SECONDS -- command...: stdout in out.txt, stderr in err.txt, both in
# all.txt; the command is killed after 3 * MAX_SECONDS (so that a hang fails instead of hanging),
# and fails when it took longer than MAX_SECONDS.
run() {
  local name=$1 want=$2 max=$3; shift 4
  local start end ms got
  start=$(date +%s%N)
  timeout -s KILL $((3 * max)) "$@" >out.txt 2>err.txt
  got=$?
  end=$(date +%s%N)
  ms=$(( (end - start) / 1000000 ))
  cat out.txt err.txt >all.txt
  if [ "$got" -eq "$want" ]; then ok; else
    fail "$name" "exit $got, wanted $want (after $ms ms)"; sed 's/^/  out: /' out.txt | head -20; sed 's/^/  err: /' err.txt | head -20
  fi
  if [ "$ms" -le $((max * 1000)) ]; then ok; else fail "$name" "took $ms ms, more than $max s"; fi
}
has_re() {  # has_re NAME FILE REGEX (extended, whole line)
  if grep -qxE -- "$3" "$2"; then ok; else fail "$1" "$2 has no line matching /$3/" "$2"; fi
}
line_of() { grep -nF -- "$2" "$1" | cut -d: -f1; }

cat >fast.mesh <<'MESH'
node ticker {
    pin led = out gpiochip0 17
    pin idle = out gpiochip0 18
    every 1us -> toggle led
}
test "an hour of a microsecond timer" {
    advance 1h
}
test "a millisecond of it" {
    advance 1ms
    expect ticker.led == 0
}
test "waiting an hour for a level that never comes" {
    expect ticker.idle == 1 within 1h
}
MESH
cat >sending.mesh <<'MESH'
node ticker {
    every 1us -> send tick to counter/ticks
}
node counter at localhost:8790 {
    on ticks -> ack "ok"
}
test "an hour of a microsecond timer that sends" {
    advance 1h
}
MESH
cat >hour.mesh <<'MESH'
node clock {
    every 1s -> send tick to counter/ticks
}
node counter at localhost:8791 {
    on ticks -> ack "ok"
}
test "an hour of a one-second timer" {
    advance 1h
    expect counter received 3600 on ticks
}
MESH

# 1. The step limit, with its default: fails fast, at the advance, saying which limit and how to
#    raise it; the other tests of the file still run, each with a limit of its own.
run "1h of 1us: exits 1, fast" 1 10 -- "$meshrun" test fast.mesh
has_re "1h of 1us: FAIL line" out.txt '  FAIL  an hour of a microsecond timer \([0-9]+ ms\)'
has_re "the next test still passes" out.txt '  ok    a millisecond of it \([0-9]+ ms\)'
has_re "within on 1h of 1us: FAIL line" out.txt '  FAIL  waiting an hour for a level that never comes \([0-9]+ ms\)'
n=$(line_of fast.mesh 'advance 1h')
has_line "step limit: where, which limit, how far" all.txt \
  "fast.mesh:$n:5: error: the test stopped at its limit of 1000000 timer firings, at 1.000 s of virtual time (of 3600.000 s to reach) [test-failed]"
has_line "step limit: the source line" all.txt "$(printf '%5d |     advance 1h' "$n")"
has_line "step limit: how to raise it" all.txt \
  "fast.mesh:$n:5: note: raise the limit with --max-steps N (0: no limit), or make the timers slower"
n=$(line_of fast.mesh 'expect ticker.idle == 1 within 1h')
has "step limit inside within: at the expect" all.txt \
  "fast.mesh:$n:5: error: the test stopped at its limit of 1000000 timer firings"
has_line "closing counts" out.txt "1 passed, 2 failed"

# 2. --max-steps N: N firings are allowed, not N + 1 (`advance 1ms` of a 1us timer is 1,000).
run "--max-steps 1000: 1ms of 1us passes" 0 10 -- "$meshrun" test fast.mesh --filter millisecond --max-steps 1000
run "--max-steps 999: 1ms of 1us fails" 1 10 -- "$meshrun" test fast.mesh --filter millisecond --max-steps 999
has "--max-steps 999: the limit named" all.txt "the test stopped at its limit of 999 timer firings, at 0.000999 s of virtual time (of 0.001 s to reach)"

# 3. The default is above an hour of a one-second timer (3,600 firings), and 0 lifts the limit.
run "an hour of a 1 s timer passes with the defaults" 0 10 -- "$meshrun" test hour.mesh
cat >twosec.mesh <<'MESH'
node ticker {
    pin led = out gpiochip0 17
    every 1us -> toggle led
}
test "two seconds of a microsecond timer" {
    advance 2s
    expect ticker.led == 0
}
MESH
run "2 s of 1us fails with the default limit" 1 20 -- "$meshrun" test twosec.mesh
run "--max-steps 0: no limit" 0 30 -- "$meshrun" test twosec.mesh --max-steps 0

# 4. The wall-time limit: a sending 1us timer is slow per firing; with no step limit, --timeout
#    stops it.
run "--timeout 1: fails after a second" 1 5 -- "$meshrun" test sending.mesh --max-steps 0 --timeout 1
n=$(line_of sending.mesh 'advance 1h')
has_re "timeout: where, which limit" all.txt \
  "sending\.mesh:$n:5: error: the test stopped at its limit of 1 s of wall time, at [0-9.]+ s of virtual time \(of 3600\.000 s to reach\) \[test-failed\]"
has_line "timeout: how to raise it" all.txt \
  "sending.mesh:$n:5: note: raise the limit with --timeout SECONDS (0: no limit)"
run "--timeout 0.5 is allowed" 1 5 -- "$meshrun" test sending.mesh --max-steps 0 --timeout 0.5
has "timeout 0.5: named" all.txt "the test stopped at its limit of 0.5 s of wall time"

# 5. Bad values, and the help.
run "--max-steps -1: exit 2" 2 5 -- "$meshrun" test hour.mesh --max-steps -1
run "--timeout -1: exit 2" 2 5 -- "$meshrun" test hour.mesh --timeout -1
run "--timeout abc: exit 2" 2 5 -- "$meshrun" test hour.mesh --timeout abc
run "help" 0 5 -- "$meshrun" test --help
has "help: --timeout" out.txt "--timeout"
has "help: --max-steps" out.txt "--max-steps"
has "help: the default timeout" out.txt "default 60"
has "help: the default step limit" out.txt "default 1000000"

echo "$pass passed, $failures failed"
[ "$failures" -eq 0 ]
