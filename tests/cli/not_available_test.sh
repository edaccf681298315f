#!/usr/bin/env bash
# `discovery etcd "URL"` parses and checks, but this version does not build it: `run` and `up`
# refuse such a file with an error at the item (exit 1), `check` and `graph` warn [not-available],
# `test` runs the scenarios (on loopback, where it does not apply) and warns. `secret env VAR` is
# built: a file with one checks clean, and one with two has an error at the second.
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
discovery_error='secure.mesh:3:16: error: `discovery etcd` is not available in this version of meshrun: nodes would not register or look each other up in etcd [not-available]'
discovery_line='    3 | discovery etcd "http://etcd.local:2379"'
discovery_caret='      |                ^~~~~~~~~~~~~~~~~~~~~~~~'

# 1. run and up refuse the file, with an error at the discovery, its line and a caret; exit 1.
# The secret is no such error.
for cmd in "run secure.mesh --node buzzer --sim" "up secure.mesh"; do
  # shellcheck disable=SC2086
  run "$cmd: refused" 1 -- "$meshrun" $cmd
  lacks "$cmd: the secret is not refused" err.txt "secret"
  has_line "$cmd: the discovery, at its line" err.txt "$discovery_error"
  has_line "$cmd: the discovery's source line" err.txt "$discovery_line"
  has_line "$cmd: the discovery's caret" err.txt "$discovery_caret"
  has_line "$cmd: not started" err.txt "secure.mesh: 1 error; not started"
  lacks "$cmd: nothing listened" out.txt "listening"
done

# 2. check warns of the discovery only, with the stable kind; --werror makes the warning fail;
# JSON has the kind.
run "check: warnings only" 0 -- "$meshrun" check secure.mesh
lacks "check: the secret is no warning" err.txt "secret"
has_line "check: the discovery warned" err.txt "${discovery_error/: error: /: warning: }"
has_line "check: the summary" out.txt "secure.mesh: ok with 1 warning: 1 node, 1 channel, 1 pin, 1 rule, 0 timers, 0 actions, 1 test"
run "check --werror" 1 -- "$meshrun" check --werror secure.mesh
run "check --format json" 0 -- "$meshrun" check --format json secure.mesh
count "check json: the kind" out.txt '"kind":"not-available"' 1
count "check json: warnings" out.txt '"severity":"warning"' 1
lacks "check json: nothing about the secret" out.txt "secret"

# 3. graph draws the file and warns.
run "graph: draws" 0 -- "$meshrun" graph secure.mesh
has "graph: the drawing" out.txt "digraph"
has_line "graph: warns" err.txt "${discovery_error/: error: /: warning: }"
lacks "graph: the secret is no warning" err.txt "secret"

# 4. test runs the scenarios (free loopback ports) and warns on stderr.
run "test: the scenarios run" 0 -- "$meshrun" test secure.mesh
has "test: the test passed" out.txt "1 passed, 0 failed"
lacks "test: the secret is no warning" err.txt "secret"
has_line "test: the discovery warned" err.txt "${discovery_error/: error: /: warning: }"

# 5. A file with a secret (and no discovery) checks clean, --werror and JSON alike.
grep -v '^discovery' secure.mesh >token.mesh
run "check of a secret: clean" 0 -- "$meshrun" check token.mesh
has_line "check of a secret: the summary" out.txt "token.mesh: ok: 1 node, 1 channel, 1 pin, 1 rule, 0 timers, 0 actions, 1 test"
if [ -s err.txt ]; then fail "check of a secret: nothing on stderr" "stderr is not empty" err.txt; else ok; fi
run "check --werror of a secret: clean" 0 -- "$meshrun" check --werror token.mesh
run "check --format json of a secret" 0 -- "$meshrun" check --format json token.mesh
lacks "check json of a secret: no diagnostic" out.txt '"kind"'
run "graph of a secret: no warning" 0 -- "$meshrun" graph token.mesh
if [ -s err.txt ]; then fail "graph of a secret: nothing on stderr" "stderr is not empty" err.txt; else ok; fi

# 6. A second secret, in an included file too, is an error at it, with a note at the first.
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
has_line "the second secret, in the included file" err.txt 'part.mesh:2:12: error: `secret` is given twice: a topology has one token [duplicate-item]'
has_line "a note at the first" err.txt 'part.mesh:1:12: note: first given here'
has_line "the count" err.txt "root.mesh: 1 error; not started"
lacks "nothing listened" out.txt "listening"
run "check of the part and of the root that includes it" 1 -- "$meshrun" check part.mesh root.mesh --format json
count "check json: each file reports the second secret" out.txt '"kind":"duplicate-item"' 2
lacks "check json: nothing is not available" out.txt '"kind":"not-available"'

echo "$pass passed, $failures failed"
[ "$failures" -eq 0 ]
