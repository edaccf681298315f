#!/usr/bin/env bash
# The command line around the commands: unknown commands and options, unreadable files for every
# command, `check -` on standard input, --seed ranges, files and nodes with nothing to run, an
# unwritable --junit and a --filter that matches nothing.
# Usage: commands_test.sh MESHRUN   (run from anywhere; writes its files to a temp dir)
set -u
. "$(dirname "${BASH_SOURCE[0]}")/../lib/checks.sh"  # ok, fail, has, has_line, lacks, count
meshrun=${1:?usage: commands_test.sh MESHRUN}
case $meshrun in /*) ;; *) meshrun=$PWD/$meshrun ;; esac
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
cd "$tmp"
# run NAME WANT_STATUS -- command...: stdout in out.txt, stderr in err.txt. Standard input is
# in.txt when it exists, else empty. The command is killed after 10 s: a command that should
# refuse and runs instead fails rather than hanging.
run() {
  local name=$1 want=$2; shift 3
  local input=/dev/null
  [ -f in.txt ] && input=in.txt
  timeout -s KILL 10 "$@" <"$input" >out.txt 2>err.txt
  local got=$?
  rm -f in.txt
  if [ "$got" -eq "$want" ]; then ok; else
    fail "$name" "exit $got, wanted $want"; sed 's/^/  out: /' out.txt | head -20; sed 's/^/  err: /' err.txt | head -20
  fi
}
empty() {  # empty NAME FILE
  if [ ! -s "$2" ]; then ok; else fail "$1" "$2 is not empty" "$2"; fi
}

cat >good.mesh <<'MESH'
node clock {
    every 1s 5 times -> send tick to buzzer/signal
}
node buzzer at 127.0.0.1:8792 {
    pin horn = out gpiochip0 18
    on signal -> { toggle horn; ack "buzz" }
}
test "a tick buzzes" {
    send 1 to buzzer/signal expect "buzz"
}
MESH
cat >bad.mesh <<'MESH'
node clock {
    every 1s -> send 1 to buzer/signal
}
node buzzer at 127.0.0.1:8793 {
    on signal -> ack "buzz"
}
MESH
printf 'mesh empty\n' >empty.mesh
cat >idle.mesh <<'MESH'
node idle {
    pin lamp = out gpiochip0 17 initial 1
}
node lamp at 127.0.0.1:8794 {
    on light -> ack "ok"
}
MESH

# 1. Unknown commands and options: say what is unknown, suggest a command, exit 2.
run "a misspelt command" 2 -- "$meshrun" chek good.mesh
has_line "misspelt command: named, with a suggestion" err.txt "meshrun: error: unknown command \`chek\`; did you mean \`check\`?"
lacks "misspelt command: not 'a subcommand is required'" err.txt "A subcommand is required"
run "an unknown command" 2 -- "$meshrun" frobnicate good.mesh
has "unknown command: named" err.txt "meshrun: error: unknown command \`frobnicate\`"
lacks "unknown command: no suggestion" err.txt "did you mean"
run "an unknown option" 2 -- "$meshrun" --bogus
has_line "unknown option: named" err.txt "meshrun: error: unknown option --bogus"
lacks "unknown option: not 'a subcommand is required'" err.txt "A subcommand is required"
run "an unknown option before a command" 2 -- "$meshrun" --bogus check good.mesh
has_line "unknown option before a command: named" err.txt "meshrun: error: unknown option --bogus"
run "an unknown option of a command" 2 -- "$meshrun" check --bogus=1 good.mesh
has_line "unknown option of a command: named" err.txt "meshrun: error: unknown option --bogus"
run "no command" 2 -- "$meshrun"
has "no command: said so" err.txt "meshrun: error: a command is required"
run "--help still works" 0 -- "$meshrun" --help
run "--version still works" 0 -- "$meshrun" --version

# 2. An unreadable file is exit 2 for every command.
for cmd in "check" "test" "graph" "up" "run --node buzzer --sim"; do
  # shellcheck disable=SC2086
  run "$cmd: a missing file" 2 -- "$meshrun" $cmd missing.mesh
  has "$cmd: a missing file: says so" err.txt "meshrun: error: cannot read \`missing.mesh\`: No such file or directory"
done
mkdir -p adir.mesh
for cmd in "graph" "up" "run --node buzzer --sim"; do
  # shellcheck disable=SC2086
  run "$cmd: a directory" 2 -- "$meshrun" $cmd adir.mesh
  has "$cmd: a directory: says so" err.txt "cannot read \`adir.mesh\`: Is a directory"
done

# 3. `check -` reads standard input, named <stdin>; includes resolve against the current directory.
cp good.mesh in.txt
run "check -: a good file" 0 -- "$meshrun" check -
has_line "check -: the summary names <stdin>" out.txt "<stdin>: ok: 2 nodes, 1 channel, 1 pin, 1 rule, 1 timer, 0 actions, 1 test"
cp bad.mesh in.txt
run "check -: a file with an error" 1 -- "$meshrun" check -
has_line "check -: the diagnostic names <stdin>" err.txt "<stdin>:2:27: error: unknown node \`buzer\` [unknown-node]"
has_line "check -: the source line" err.txt "    2 |     every 1s -> send 1 to buzer/signal"
cp bad.mesh in.txt
run "check - with --format json" 1 -- "$meshrun" check --format json -
has "check - json: file is <stdin>" out.txt '"file":"<stdin>"'
mkdir -p parts
sed -n '4,7p' good.mesh >parts/buzzer.mesh
printf 'include "parts/buzzer.mesh"\nnode clock {\n    every 1s -> send 1 to buzzer/signal\n}\n' >root.mesh
cp root.mesh in.txt
run "check -: includes from the current directory" 0 -- "$meshrun" check -
has_line "check -: the included node counted" out.txt "<stdin>: ok: 2 nodes, 1 channel, 1 pin, 1 rule, 1 timer, 0 actions, 0 tests"
cp root.mesh in.txt
run "check -: includes resolve against the current directory only" 1 -- bash -c "cd parts && \"\$0\" check -" "$meshrun"
has "check -: a missing include named" err.txt "<stdin>:1:1: error: cannot read included file \`parts/buzzer.mesh\`: No such file or directory [include-not-found]"
cp good.mesh in.txt
run "check - beside a file" 1 -- "$meshrun" check good.mesh - bad.mesh
has_line "check - beside files: each summarised" out.txt "<stdin>: ok: 2 nodes, 1 channel, 1 pin, 1 rule, 1 timer, 0 actions, 1 test"
cp good.mesh in.txt
run "check - twice" 2 -- "$meshrun" check - -
has "check - twice: said why" err.txt "meshrun: error: standard input (\`-\`) can be read only once"

# 4. --seed must be a whole number from 0 up, for every command that takes it.
for cmd in "test good.mesh" "up good.mesh" "run good.mesh --node buzzer --sim"; do
  # shellcheck disable=SC2086
  run "$cmd --seed -1" 2 -- "$meshrun" $cmd --seed -1
  has "$cmd --seed -1: names the option" err.txt "meshrun: error: --seed"
  lacks "$cmd --seed -1: nothing ran" out.txt "listening"
  lacks "$cmd --seed -1: no test ran" out.txt "passed"
done
run "--seed 1.5" 2 -- "$meshrun" test good.mesh --seed 1.5
run "--seed 2^64" 2 -- "$meshrun" test good.mesh --seed 18446744073709551616
has "--seed 2^64: out of range" err.txt "is not a whole number from 0 to 18446744073709551615"
run "--seed 2^64 - 1" 0 -- "$meshrun" test good.mesh --seed 18446744073709551615

# 5. Nothing to run: a file with no node (up), a node that would do nothing (run).
run "up: a file with no node" 1 -- "$meshrun" up empty.mesh
has_line "up: no node: said so" err.txt "meshrun: error: \`empty.mesh\` declares no node: nothing to run"
run "run: a node with nothing to serve" 1 -- "$meshrun" run idle.mesh --node idle --sim
has_line "run: nothing to serve: said so" err.txt \
  "meshrun: error: node \`idle\` would do nothing: it has no port, no timer and no rule; nothing to run"
run "up --only: only nodes with nothing to do" 1 -- "$meshrun" up idle.mesh --only idle
has_line "up --only: said so" err.txt \
  "meshrun: error: node \`idle\` would do nothing: it has no port, no timer and no rule; nothing to run"

# 6. test --junit to a path that cannot be written: exit 2 before any test runs.
run "junit: an unwritable path" 2 -- "$meshrun" test good.mesh --junit no-such-dir/results.xml
has "junit: says so" err.txt "meshrun: error: cannot write \`no-such-dir/results.xml\`: No such file or directory"
empty "junit: no test ran" out.txt
run "junit: a writable path" 0 -- "$meshrun" test good.mesh --junit results.xml
has "junit: written" results.xml "<testcase"

# 7. test --filter that matches nothing: said, exit 1.
run "filter: nothing matches" 1 -- "$meshrun" test good.mesh --filter "no such title"
has_line "filter: said so" err.txt "meshrun: error: no test title contains \`no such title\` (1 test in 1 file)"
run "filter: something matches" 0 -- "$meshrun" test good.mesh --filter "tick"

# A file that never ends (or is far too large for a topology) is refused, not read until memory runs out.
run "check /dev/zero: refused" 2 -- "$meshrun" check /dev/zero
has_line "check /dev/zero: too large" err.txt "meshrun: error: cannot read \`/dev/zero\`: File too large"
printf 'include "/dev/zero"\n' >zero.mesh
run "include /dev/zero: an error of the file" 1 -- "$meshrun" check zero.mesh
has "include /dev/zero: too large" err.txt "cannot read included file \`/dev/zero\`: File too large"

# Times are seconds to the millisecond: 0, or 0.001 and up; nothing shorter is silently 0.
for value in 0.0004 -1 nan '' 1e9; do
  run "up --ack-timeout '$value'" 2 -- "$meshrun" up good.mesh --ack-timeout "$value"
  has "up --ack-timeout '$value': says the range" err.txt "0, or a number of seconds from 0.001 to 86400"
  lacks "up --ack-timeout '$value': nothing ran" out.txt "listening"
done

echo "$pass passed, $failures failed"
[ "$failures" -eq 0 ]
