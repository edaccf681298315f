#!/usr/bin/env bash
# `discovery etcd "URL"` checks clean (`check`, `graph`), `test` runs the scenarios without etcd,
# and `run` with etcd unreachable serves all the same and says why once (registering against a real
# etcd: tests/discovery/registry_test.py). `secret env VAR`: a file with one checks clean, and one
# with two has an error at the second.
# Usage: discovery_check_test.sh MESHRUN   (run from anywhere; writes its files to a temp dir)
set -u
. "$(dirname "${BASH_SOURCE[0]}")/../lib/checks.sh"  # ok, fail, has, has_line, lacks, count
meshrun=${1:?usage: discovery_check_test.sh MESHRUN}
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

# 1. check: clean, with --werror and in JSON too.
run "check: clean" 0 -- "$meshrun" check secure.mesh
has_line "check: the summary" out.txt "secure.mesh: ok: 1 node, 1 channel, 1 pin, 1 rule, 0 timers, 0 actions, 1 test"
if [ -s err.txt ]; then fail "check: nothing on stderr" "stderr is not empty" err.txt; else ok; fi
run "check --werror" 0 -- "$meshrun" check --werror secure.mesh
run "check --format json" 0 -- "$meshrun" check --format json secure.mesh
lacks "check json: no diagnostic" out.txt '"kind"'

# 2. graph draws the file, and says nothing else.
run "graph: draws" 0 -- "$meshrun" graph secure.mesh
has "graph: the drawing" out.txt "digraph"
if [ -s err.txt ]; then fail "graph: nothing on stderr" "stderr is not empty" err.txt; else ok; fi

# 3. test runs the scenarios (free loopback ports) without etcd, and says nothing of it.
run "test: the scenarios run" 0 -- "$meshrun" test secure.mesh
has "test: the test passed" out.txt "1 passed, 0 failed"
lacks "test: nothing of etcd" out.txt "etcd"
lacks "test: nothing of etcd on stderr" err.txt "etcd"

# 4. run with etcd unreachable (nothing listens on its port): the node serves all the same and says
# once, not at every retry, why it cannot register. SIGTERM after 3 s: exit 0 (timeout says 124).
sed "s|http://etcd.local:2379|http://127.0.0.1:21951|; s|127.0.0.1:8795|127.0.0.1:21950|" secure.mesh >down.mesh
run "run with etcd down: serves until stopped" 124 -- env FLEET_TOKEN=t timeout -s TERM 3 "$meshrun" run down.mesh --node buzzer --sim --color never
has "run with etcd down: listening" out.txt "listening on ws://127.0.0.1:21950"
count "run with etcd down: said once" out.txt "cannot have a lease from etcd (http://127.0.0.1:21951: Connection refused); retrying" 1

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
