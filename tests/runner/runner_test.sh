#!/usr/bin/env bash
# `meshrun test`, the scenario runner, as a user runs it: failures and their messages, virtual
# time, determinism, debounce and `within`, --filter, --junit, bad usage, rule coverage, variables
# and named delays.
# Usage: runner_test.sh MESHRUN   (run from anywhere; works on copies of its fixtures in a temp dir)
set -u
. "$(dirname "${BASH_SOURCE[0]}")/../lib/checks.sh"  # ok, fail, has, has_line, lacks, count
meshrun=${1:?usage: runner_test.sh MESHRUN}
case $meshrun in /*) ;; *) meshrun=$PWD/$meshrun ;; esac
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
cp "$here"/*.mesh "$tmp"/
cd "$tmp"   # diagnostics then name the fixtures by their bare file names
run() {  # run NAME WANT_STATUS -- command...: stdout in out.txt, stderr in err.txt, both in all.txt
  local name=$1 want=$2; shift 3
  "$@" >out.txt 2>err.txt
  local got=$?
  cat out.txt err.txt >all.txt
  if [ "$got" -eq "$want" ]; then ok; else
    fail "$name" "exit $got, wanted $want"; sed 's/^/  out: /' out.txt; sed 's/^/  err: /' err.txt
  fi
}
has_re() {  # has_re NAME FILE REGEX (extended, whole line)
  if grep -qxE -- "$3" "$2"; then ok; else fail "$1" "$2 has no line matching /$3/" "$2"; fi
}
last_line() {  # last_line NAME FILE LINE: the last line of FILE is exactly LINE
  local got; got=$(tail -n 1 "$2")
  if [ "$got" = "$3" ]; then ok; else fail "$1" "last line is '$got', wanted '$3'" "$2"; fi
}
follows() {  # follows NAME FILE FIRST SECOND: a line equal to SECOND comes right after a line equal to FIRST
  if awk -v a="$3" -v b="$4" 'prev == a && $0 == b { found = 1 } { prev = $0 } END { exit !found }' "$2"
  then ok; else fail "$1" "no line '$4' right after '$3'" "$2"; fi
}
line_of() {  # line_of FILE TEXT: the number of the one line of FILE that contains TEXT
  grep -nF -- "$2" "$1" | cut -d: -f1
}
caret() {  # caret TEXT: the caret line under TEXT written at column 5 after line number N (gutter width 5)
  local n=${#1} tildes
  tildes=$(printf '%*s' $((n - 1)) '' | tr ' ' '~')
  printf '      |     ^%s' "$tildes"
}
now_ns() { date +%s%N; }

# ---------------------------------------------------------------------------------------------
# 1. A failing scenario fails, and says where and why; the passing tests of the file still pass.
run "failing file exits 1" 1 -- "$meshrun" test failing.mesh
has_line "file path first" out.txt "failing.mesh"
first=$(head -n 1 out.txt)
[ "$first" = "failing.mesh" ] && ok || fail "file path is the first line" "first line is '$first'" out.txt
has_re "ok line: a high bit buzzes" out.txt '  ok    a high bit buzzes \([0-9]+ ms\)'
has_re "ok line: a low bit is silent" out.txt '  ok    a low bit is silent \([0-9]+ ms\)'
has_re "FAIL line: wrong level" out.txt '  FAIL  the pin is checked against the wrong level \([0-9]+ ms\)'
has_re "FAIL line: reply" out.txt '  FAIL  the reply is not the one expected \([0-9]+ ms\)'
has_re "FAIL line: count" out.txt '  FAIL  the count is not the one expected \([0-9]+ ms\)'

src='    expect buzzer.horn == 0'
n=$(awk -v t='test "the pin is checked against the wrong level" {' -v l="$src" \
  '$0 == t { in_test = 1 } in_test && $0 == l { print NR; exit }' failing.mesh)
err="failing.mesh:$n:5: error: expected \`buzzer.horn == 0\`, but it is 1 at 3.000 s [test-failed]"
has_line "pin: file:line:col, what was seen" all.txt "$err"
has_line "pin: source line" all.txt "$(printf '%5d | %s' "$n" "$src")"
has_line "pin: caret under the expect" all.txt "$(caret "${src#    }")"
has_line "pin: note says when and by which rule" all.txt \
  "failing.mesh:$n:5: note: \`buzzer.horn\` was last written 1 at 3.000 s by \`on signal 1\`"
follows "pin: diagnostic right after its FAIL line" all.txt \
  "$(grep -E '^  FAIL  the pin is checked against the wrong level' all.txt)" "$err"
follows "pin: source line right after the error" all.txt "$err" "$(printf '%5d | %s' "$n" "$src")"

src='    send 1 to buzzer/signal expect "beep"'
n=$(line_of failing.mesh "$src")
has_line "reply: expected the reply X, got Y" all.txt \
  "failing.mesh:$n:5: error: expected the reply \`beep\`, got \`buzz buzz buzz\` [test-failed]"
has_line "reply: source line" all.txt "$(printf '%5d | %s' "$n" "$src")"
has_line "reply: caret" all.txt "$(caret "${src#    }")"

src='    expect buzzer received 5 on signal'
n=$(line_of failing.mesh "$src")
has "count: file:line:col and the count seen" all.txt \
  "failing.mesh:$n:5: error: expected \`buzzer\` to have received 5 on \`signal\`, but it received 2"
has_line "count: source line" all.txt "$(printf '%5d | %s' "$n" "$src")"
last_line "failing: closing counts" out.txt "2 passed, 3 failed"

# ---------------------------------------------------------------------------------------------
# 2. Virtual time is virtual: an hour of a one-second timer in well under a second of wall time.
start=$(now_ns)
run "an hour: exits 0" 0 -- "$meshrun" test hour.mesh
ms=$(( ($(now_ns) - start) / 1000000 ))
# Under AddressSanitizer (tests/sanitize/) every allocation costs several times more: 5 s there.
limit=1000
if ldd "$meshrun" 2>/dev/null | grep -q libasan; then limit=5000; fi
if [ "$ms" -lt "$limit" ]; then ok; else fail "an hour of virtual time in under $limit ms" "took $ms ms" out.txt; fi
has_re "an hour: ok line" out.txt '  ok    an hour of ticks \([0-9]+ ms\)'
last_line "an hour: closing counts" out.txt "1 passed, 0 failed"

# ---------------------------------------------------------------------------------------------
# 3. Determinism: the same file and seed, 100 times (ten at a time, so that the runs also compete
#    for the CPU), give the same output once the wall times are removed.
strip() { sed -E 's/ \([0-9]+ ms\)$//' "$1"; }
"$meshrun" test random.mesh --seed 5 >seed5.raw 2>&1
strip seed5.raw >seed5.txt
has "random: the levels are printed" seed5.txt "but it took \`"
has_re "random: the passing test passes" seed5.txt '  ok    the flipper flips twenty times'
last_line "random: closing counts" seed5.txt "1 passed, 1 failed"
differ=0
for batch in 0 1 2 3 4 5 6 7 8 9; do
  for i in 0 1 2 3 4 5 6 7 8 9; do
    "$meshrun" test random.mesh --seed 5 >"run$batch$i.raw" 2>&1 &
  done
  wait
done
for f in run*.raw; do
  strip "$f" >"${f%.raw}.txt"
  if ! cmp -s seed5.txt "${f%.raw}.txt"; then
    differ=$((differ + 1))
    [ "$differ" -eq 1 ] && diff seed5.txt "${f%.raw}.txt" | sed 's/^/  diff: /'
  fi
done
if [ "$differ" -eq 0 ]; then ok; else fail "100 runs with --seed 5 are identical" "$differ of 100 differ"; fi
"$meshrun" test random.mesh --seed 6 >seed6.raw 2>&1
strip seed6.raw >seed6.txt
if cmp -s seed5.txt seed6.txt; then echo "note: --seed 6 gives the same output as --seed 5 (allowed)"
else echo "note: --seed 6 gives other levels than --seed 5 (allowed)"; fi

# ---------------------------------------------------------------------------------------------
# 4. Debounce, and `within` on virtual time.
run "debounce: exits 1 (one test fails on purpose)" 1 -- "$meshrun" test debounce.mesh
has_re "a bounce shorter than the debounce time fires nothing" out.txt \
  '  ok    a bounce shorter than the debounce time fires nothing \([0-9]+ ms\)'
has_re "a press held longer than the debounce time fires" out.txt \
  '  ok    a press held longer than the debounce time fires \([0-9]+ ms\)'
has_re "a press fires exactly when the debounce time has passed" out.txt \
  '  ok    a press fires once it has held for the whole debounce time \([0-9]+ ms\)'
has_re "within 50ms passes for a level reached at 30ms, and stops there" out.txt \
  '  ok    within waits until the expectation is met \([0-9]+ ms\)'
has_re "within 10ms fails for a level reached at 30ms" out.txt \
  '  FAIL  within waits no longer than its duration \([0-9]+ ms\)'
n=$(line_of debounce.mesh 'expect hall.chime == 0 within 10ms')
has_line "within 10ms: waited exactly 10ms of virtual time" all.txt \
  "debounce.mesh:$n:5: error: expected \`hall.chime == 0\` within 0.010 s, but it is 1 at 0.010 s [test-failed]"
last_line "debounce: closing counts" out.txt "4 passed, 1 failed"

# ---------------------------------------------------------------------------------------------
# 5. --filter and --junit.
run "filter: exits 0 (only passing tests match)" 0 -- "$meshrun" test failing.mesh --filter "bit"
has_re "filter: a high bit buzzes ran" out.txt '  ok    a high bit buzzes \([0-9]+ ms\)'
has_re "filter: a low bit is silent ran" out.txt '  ok    a low bit is silent \([0-9]+ ms\)'
lacks "filter: no other test ran" out.txt "FAIL"
lacks "filter: the skipped titles are not listed" out.txt "the reply is not the one expected"
last_line "filter: closing counts with skipped" out.txt "2 passed, 0 failed, 3 skipped"
run "filter: nothing matches is an error" 1 -- "$meshrun" test failing.mesh --filter "no such title"
last_line "filter: nothing matches, all skipped" out.txt "0 passed, 0 failed, 5 skipped"
has_line "filter: nothing matches, said so" err.txt "meshrun: error: no test title contains \`no such title\` (5 tests in 1 file)"

run "junit: exits 1" 1 -- "$meshrun" test failing.mesh coverage.mesh --junit results.xml
last_line "junit: closing counts over two files" out.txt "4 passed, 3 failed"
if /usr/bin/python3 - results.xml <<'PY'
import sys, xml.etree.ElementTree as ET
root = ET.parse(sys.argv[1]).getroot()
suites = [root] if root.tag == "testsuite" else root.findall("testsuite")
by_name = {s.get("name"): s for s in suites}
assert set(by_name) == {"failing.mesh", "coverage.mesh"}, by_name
f, c = by_name["failing.mesh"], by_name["coverage.mesh"]
assert (f.get("tests"), f.get("failures")) == ("5", "3"), f.attrib
assert (c.get("tests"), c.get("failures")) == ("2", "0"), c.attrib
cases = {tc.get("name"): tc for tc in f.findall("testcase")}
assert len(cases) == 5, list(cases)
failed = sorted(n for n, tc in cases.items() if tc.find("failure") is not None)
assert failed == ["the count is not the one expected", "the pin is checked against the wrong level",
                  "the reply is not the one expected"], failed
msg = cases["the pin is checked against the wrong level"].find("failure").get("message")
assert "but it is 1 at 3.000 s" in msg, msg
assert all(tc.find("failure") is None for tc in c.findall("testcase"))
assert len(c.findall("testcase")) == 2
PY
then ok; else fail "junit: the XML parses, with the right counts and <failure> elements" "see above" results.xml; fi

# ---------------------------------------------------------------------------------------------
# 6. Bad usage, and a file that does not check.
run "unreadable file: exit 2" 2 -- "$meshrun" test no-such-file.mesh
has "unreadable file: says so" err.txt "no-such-file.mesh"
mkdir adir.mesh
run "a directory is not a readable file: exit 2" 2 -- "$meshrun" test adir.mesh
run "no file: exit 2" 2 -- "$meshrun" test
run "unknown option: exit 2" 2 -- "$meshrun" test --frobnicate hour.mesh
run "check error: exit 1" 1 -- "$meshrun" test checkerror.mesh
n=$(line_of checkerror.mesh 'buzer/signal')
has_line "check error: the diagnostic is printed" all.txt \
  "checkerror.mesh:$n:27: error: unknown node \`buzer\` [unknown-node]"
has "check error: no test run" all.txt "no test run"
lacks "check error: its test did not run" all.txt "never runs"
lacks "check error: no test line" out.txt "  ok  "
run "check error beside a good file: exit 1" 1 -- "$meshrun" test checkerror.mesh coverage.mesh

# ---------------------------------------------------------------------------------------------
# 7. Rule coverage.
run "coverage: exits 0" 0 -- "$meshrun" test coverage.mesh
n=$(line_of coverage.mesh 'on reset')
has_line "coverage: the count of rules never fired" out.txt "  rule coverage: 1 rule never fired in any test:"
has_line "coverage: the rule never fired, with file:line" out.txt "    buzzer: on reset (coverage.mesh:$n)"
lacks "coverage: fired rules not listed" out.txt "on signal"
run "coverage: all fired" 0 -- "$meshrun" test hour.mesh
has_line "coverage: every rule fired" out.txt "  rule coverage: every rule fired in some test"
run "coverage: one line per file" 1 -- "$meshrun" test failing.mesh coverage.mesh
cov=$(grep -c '^  rule coverage: ' out.txt)
[ "$cov" -eq 2 ] && ok || fail "coverage: one line per file" "$cov coverage lines for 2 files" out.txt
lacks "coverage: no branch line without an if" out.txt "branch coverage"

# ---------------------------------------------------------------------------------------------
# 8. `if` on virtual time, and branch coverage.
run "branches: exits 0" 0 -- "$meshrun" test branches.mesh
last_line "branches: all pass" out.txt "3 passed, 0 failed"
has_line "branches: every rule fired" out.txt "  rule coverage: every rule fired in some test"
n=$(line_of branches.mesh 'on spare')
has_line "branches: the count of branches never run" out.txt "  branch coverage: 1 branch of \`if\` never ran in any test:"
has_line "branches: the branch never run, with file:line" out.txt "    hall: branch \`else\` (branches.mesh:$n) of \`on spare\` never ran"
lacks "branches: branches that ran not listed" out.txt "of \`on mode\`"
run "branches: only the pin test" 0 -- "$meshrun" test branches.mesh --filter "pin's level"
has_line "branches: unrun branches of the fired rules only" out.txt "  branch coverage: 2 branches of \`if\` never ran in any test:"
has_line "branches: an if never taken" out.txt "    hall: branch \`if\` (branches.mesh:$(line_of branches.mesh 'value == "day"')) of \`on mode\` never ran"
has_line "branches: an else never taken" out.txt "    hall: branch \`else\` (branches.mesh:$(line_of branches.mesh 'unknown {value}')) of \`on mode\` never ran"
lacks "branches: a rule that never fired lists no branch" out.txt "of \`on spare\`"

# ---------------------------------------------------------------------------------------------
# 9. Variables and named delays on virtual time, and failures of `expect NODE.VAR`.
run "state: exits 0" 0 -- "$meshrun" test state.mesh
last_line "state: all pass" out.txt "7 passed, 0 failed"
has_re "state: a delay restarted 1,000 times" out.txt '  ok    a delay restarted 1,000 times fires once, at the last restart \+ D \([0-9]+ ms\)'
has_re "state: a cancelled delay" out.txt '  ok    a cancelled delay never fires, and a cancel with nothing pending does nothing \([0-9]+ ms\)'
has_re "state: a restart's value" out.txt '  ok    a restart captures the new value \([0-9]+ ms\)'
has_re "state: variables across firings" out.txt '  ok    variables keep their value across firings, and start at their literal in each test \([0-9]+ ms\)'
has_re "state: the motion light" out.txt '  ok    the light stays on while there is motion \([0-9]+ ms\)'
has_re "state: a variable too long" out.txt '  ok    a variable too long fails its firing, and says why \([0-9]+ ms\)'
has_re "state: a test's values evaluated" out.txt "  ok    a test's values are evaluated as a node's: a negative number, interpolation \\([0-9]+ ms\\)"
run "statefail: exits 1" 1 -- "$meshrun" test statefail.mesh
last_line "statefail: both fail" out.txt "0 passed, 2 failed"
n=$(line_of statefail.mesh 'expect hall.visits == 2 within 1s')
has_line "statefail: a variable's value at the deadline" all.txt \
  "statefail.mesh:$n:5: error: expected \`hall.visits == 2\` within 1.000 s, but it is 1 at 3.000 s [test-failed]"
has_line "statefail: who set it last, and when" all.txt \
  "statefail.mesh:$n:5: note: \`hall.visits\` was last set to 1 at 0.000 s by \`on motion 1\`"
n=$(line_of statefail.mesh 'expect hall.mode == "manual"')
has_line "statefail: a text quoted" all.txt \
  "statefail.mesh:$n:5: error: expected \`hall.mode == \"manual\"\`, but it is \"auto\" at 0.000 s [test-failed]"
has_line "statefail: never set, its literal" all.txt \
  "statefail.mesh:$n:5: note: \`hall.mode\` was never set: it is still its literal \"auto\""

echo "$pass passed, $failures failed"
[ "$failures" -eq 0 ]
