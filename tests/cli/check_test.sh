#!/usr/bin/env bash
# `meshrun check` as a user runs it: exit codes, summary, formats, color, help.
# Usage: check_test.sh MESHRUN   (run from anywhere; writes its files to a temp dir)
set -uo pipefail
meshrun=${1:?usage: check_test.sh MESHRUN}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
cd "$tmp"
failures=0
pass=0

expect() {  # expect NAME WANT_STATUS -- command...
  local name=$1 want=$2; shift 3
  "$@" >out.txt 2>err.txt
  local got=$?
  if [ "$got" -ne "$want" ]; then
    echo "FAIL: $name: exit $got, wanted $want"; sed 's/^/  out: /' out.txt; sed 's/^/  err: /' err.txt
    failures=$((failures + 1))
  else
    pass=$((pass + 1))
  fi
}
contains() {  # contains NAME FILE TEXT
  if grep -qF -- "$3" "$2"; then pass=$((pass + 1)); else
    echo "FAIL: $1: $2 does not contain '$3'"; sed 's/^/  | /' "$2"; failures=$((failures + 1)); fi
}
lacks() {
  if grep -qF -- "$3" "$2"; then echo "FAIL: $1: $2 contains '$3'"; failures=$((failures + 1)); else pass=$((pass + 1)); fi
}

cat >good.mesh <<'MESH'
mesh demo
node clock {
    every 1s 5 times -> send tick to buzzer/signal
}
node buzzer at localhost:8766 {
    pin horn = out gpiochip0 18
    on signal 1 -> { horn = 1; ack "buzz" }
    on signal -> { horn = 0; ack "..." }
}
MESH
cat >bad.mesh <<'MESH'
node clock {
    every 1s -> send 1 to buzer/signal
}
node buzzer at localhost:8766 {
    pin horn = out gpiochip0 18
    on signal -> { horn = 1; ack "buzz" }
}
MESH
cat >warn.mesh <<'MESH'
node buzzer at localhost:8766 {
    pin horn = out gpiochip0 18
    pin spare = out gpiochip0 19
    on signal -> { horn = 1; ack "buzz" }
}
MESH

expect "clean file" 0 -- "$meshrun" check good.mesh
contains "summary line" out.txt "good.mesh: ok: 2 nodes, 1 channel, 1 pin, 2 rules, 1 timer, 0 actions, 0 tests"

expect "file with an error" 1 -- "$meshrun" check bad.mesh
contains "diagnostic position" err.txt "bad.mesh:2:27: error: unknown node \`buzer\` [unknown-node]"
contains "caret" err.txt "^~~~~"
contains "suggestion" err.txt "did you mean \`buzzer\`?"
contains "error count" err.txt "bad.mesh: 1 error, 0 warnings"

expect "warnings alone pass" 0 -- "$meshrun" check warn.mesh
contains "warning shown" err.txt "warning:"
contains "summary counts warnings" out.txt "warn.mesh: ok with 1 warning"
expect "--werror fails on warnings" 1 -- "$meshrun" check --werror warn.mesh

expect "every file is checked" 1 -- "$meshrun" check bad.mesh good.mesh warn.mesh
contains "second file summarised" out.txt "good.mesh: ok"
contains "third file's warning" err.txt "warn.mesh:3:"

expect "unreadable file" 2 -- "$meshrun" check missing.mesh
contains "unreadable message" err.txt "cannot read \`missing.mesh\`"

mkdir adir.mesh
expect "a directory is no file" 2 -- "$meshrun" check adir.mesh
contains "directory message" err.txt "cannot read \`adir.mesh\`: Is a directory"

expect "json format" 1 -- "$meshrun" check --format json bad.mesh warn.mesh
if /usr/bin/python3 - out.txt <<'PY'
import json, sys
rows = [json.loads(line) for line in open(sys.argv[1])]
assert len(rows) == 2, rows
assert rows[0]["kind"] == "unknown-node" and rows[0]["line"] == 2 and rows[0]["column"] == 27, rows[0]
assert rows[0]["end"]["column"] == 32 and rows[0]["severity"] == "error", rows[0]
assert rows[0]["notes"][0]["message"] == "did you mean `buzzer`?", rows[0]
assert rows[1]["severity"] == "warning" and rows[1]["file"] == "warn.mesh", rows[1]
PY
then pass=$((pass + 1)); else echo "FAIL: json rows"; failures=$((failures + 1)); fi

expect "color always" 1 -- "$meshrun" check --color always bad.mesh
contains "escape codes" err.txt $'\x1b[1;31merror'
expect "color never" 1 -- "$meshrun" check --color never bad.mesh
lacks "no escape codes" err.txt $'\x1b['
if command -v script >/dev/null; then
  script -qec "$meshrun check bad.mesh" /dev/null >tty.txt 2>&1
  contains "color on a terminal" tty.txt $'\x1b[1;31merror'
  NO_COLOR=1 script -qec "$meshrun check bad.mesh" /dev/null >tty.txt 2>&1
  lacks "NO_COLOR honoured" tty.txt $'\x1b[1;31m'
fi

expect "help" 0 -- "$meshrun" --help
contains "help lists check" out.txt "check"
expect "check help" 0 -- "$meshrun" check --help
contains "check help: formats" out.txt "--format"
contains "check help: exit status" out.txt "Exit status"
expect "version" 0 -- "$meshrun" --version
expect "no command" 2 -- "$meshrun"
expect "no file" 2 -- "$meshrun" check
expect "bad format" 2 -- "$meshrun" check --format xml good.mesh
expect "unknown option" 2 -- "$meshrun" check --frobnicate good.mesh

echo "$pass passed, $failures failed"
[ "$failures" -eq 0 ]
