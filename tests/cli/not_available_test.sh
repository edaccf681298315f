#!/usr/bin/env bash
# `secret env VAR` and `discovery etcd "URL"` parse and check, but this version does not build
# them: `run` and `up` refuse such a file with an error at the item (exit 1), `check` and `graph`
# warn [not-available], `test` runs the scenarios (on loopback, where neither applies) and warns.
# Usage: not_available_test.sh MESHRUN   (run from anywhere; writes its files to a temp dir)
set -u
. "$(dirname "${BASH_SOURCE[0]}")/../lib/checks.sh"  # ok, fail, has, has_line, lacks, count
meshrun=${1:?usage: not_available_test.sh MESHRUN}
case $meshrun in /*) ;; *) meshrun=$PWD/$meshrun ;; esac
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
cd "$tmp"
# run NAME WANT_STATUS -- command...: stdout in out.txt, stderr in err.txt; killed after 10 s, so
# that a command that should refuse the file and runs it instead fails rather than hanging.
run() {
  local name=$1 want=$2; shift 3
  timeout -s KILL 10 "$@" </dev/null >out.txt 2>err.txt
  local got=$?
  if [ "$got" -eq "$want" ]; then ok; else
    fail "$name" "exit $got, wanted $want"; sed 's/^/  out: /' out.txt | head -20; sed 's/^/  err: /' err.txt | head -20
  fi
}

cat >secure.mesh <<'MESH'
mesh secure
secret env FLEET_TOKEN
discovery etcd "http://etcd.local:2379"

node buzzer at 127.0.0.1:8795 {
    pin horn = out gpiochip0 18
    on signal -> { horn = 1; ack "buzz" }
}
test "a signal buzzes" {
    send 1 to buzzer/signal expect "buzz"
    expect buzzer.horn == 1
}
MESH
secret_error='secure.mesh:2:12: error: `secret env FLEET_TOKEN` is not available in this version of meshrun: links would run without the token [not-available]'
secret_line='    2 | secret env FLEET_TOKEN'
secret_caret='      |            ^~~~~~~~~~~'
discovery_error='secure.mesh:3:16: error: `discovery etcd` is not available in this version of meshrun: nodes would not register or look each other up in etcd [not-available]'
discovery_line='    3 | discovery etcd "http://etcd.local:2379"'
discovery_caret='      |                ^~~~~~~~~~~~~~~~~~~~~~~~'

# 1. run and up refuse the file, with an error at each item, its line and a caret; exit 1.
for cmd in "run secure.mesh --node buzzer --sim" "up secure.mesh"; do
  # shellcheck disable=SC2086
  run "$cmd: refused" 1 -- "$meshrun" $cmd
  has_line "$cmd: the secret, at its line" err.txt "$secret_error"
  has_line "$cmd: the secret's source line" err.txt "$secret_line"
  has_line "$cmd: the secret's caret" err.txt "$secret_caret"
  has_line "$cmd: the discovery, at its line" err.txt "$discovery_error"
  has_line "$cmd: the discovery's source line" err.txt "$discovery_line"
  has_line "$cmd: the discovery's caret" err.txt "$discovery_caret"
  has_line "$cmd: not started" err.txt "secure.mesh: 2 errors; not started"
  lacks "$cmd: nothing listened" out.txt "listening"
done

# 2. check warns, with the stable kind; --werror makes the warnings fail; JSON has the kind.
run "check: warnings only" 0 -- "$meshrun" check secure.mesh
has_line "check: the secret warned" err.txt "${secret_error/: error: /: warning: }"
has_line "check: the discovery warned" err.txt "${discovery_error/: error: /: warning: }"
has_line "check: the summary" out.txt "secure.mesh: ok with 2 warnings: 1 node, 1 channel, 1 pin, 1 rule, 0 timers, 0 actions, 1 test"
run "check --werror" 1 -- "$meshrun" check --werror secure.mesh
run "check --format json" 0 -- "$meshrun" check --format json secure.mesh
count "check json: the kind" out.txt '"kind":"not-available"' 2
count "check json: warnings" out.txt '"severity":"warning"' 2

# 3. graph draws the file and warns.
run "graph: draws" 0 -- "$meshrun" graph secure.mesh
has "graph: the drawing" out.txt "digraph"
has_line "graph: warns" err.txt "${secret_error/: error: /: warning: }"

# 4. test runs the scenarios (free loopback ports, no secrets needed) and warns on stderr.
run "test: the scenarios run" 0 -- "$meshrun" test secure.mesh
has "test: the test passed" out.txt "1 passed, 0 failed"
has_line "test: the secret warned" err.txt "${secret_error/: error: /: warning: }"
has_line "test: the discovery warned" err.txt "${discovery_error/: error: /: warning: }"

# 5. Each item is reported where it is written, in an included file too.
cat >part.mesh <<'MESH'
secret env A_TOKEN
secret env B_TOKEN
MESH
cat >root.mesh <<'MESH'
include "part.mesh"
node buzzer at 127.0.0.1:8796 {
    on signal -> ack "buzz"
}
MESH
run "up of an include with two secrets: refused" 1 -- "$meshrun" up root.mesh
has "the first secret, in the included file" err.txt 'part.mesh:1:12: error: `secret env A_TOKEN` is not available'
has "the second secret" err.txt 'part.mesh:2:12: error: `secret env B_TOKEN` is not available'
has_line "the count" err.txt "root.mesh: 2 errors; not started"
run "check of the part and of the root that includes it" 0 -- "$meshrun" check part.mesh root.mesh --format json
count "check json: each file reports both secrets" out.txt '"kind":"not-available"' 4

echo "$pass passed, $failures failed"
[ "$failures" -eq 0 ]
