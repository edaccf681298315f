#!/usr/bin/env bash
# `meshrun probe` on a machine without a GPIO chip (this one, and CI's): every pin is a
# [gpio-line] error at its declaration that says there is no chip (exit 1); bad usage exits 2.
# The real chip cases run in the gpio-sim VM (tests/hw/scenarios/probe.sh).
# Usage: probe_test.sh MESHRUN
set -u
meshrun=${1:?usage: probe_test.sh MESHRUN}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
cd "$tmp"
if ls /dev/gpiochip* >/dev/null 2>&1; then echo "SKIPPED: this machine has GPIO chips"; exit 77; fi
pass=0 failures=0
check() {  # check NAME COMMAND...: the command must succeed
  local name=$1; shift
  if "$@"; then pass=$((pass + 1)); else echo "FAIL: $name"; sed 's/^/  out: /' out.txt; sed 's/^/  err: /' err.txt; failures=$((failures + 1)); fi
}
cat > board.mesh <<'MESH'
mesh board
node porch at localhost:8711 {
    pin button = in gpiochip0 17 pull_up
    pin lamp   = out "pinctrl-rp1" "GPIO27"
    on button 0 -> lamp = 1
}
MESH
"$meshrun" probe board.mesh >out.txt 2>err.txt; rc=$?
check "no chip: exit 1" [ "$rc" = 1 ]
check "the header says there is no chip" grep -q "no GPIO chip on this machine" out.txt
check "a line a pin" grep -q "^porch.button: no chip$" out.txt
check "the button's error at its declaration" grep -q "^board.mesh:3:5: error: no GPIO chip \`gpiochip0\` \[gpio-line\]" err.txt
check "the lamp's error names the label" grep -q "^board.mesh:4:5: error: .*pinctrl-rp1.* \[gpio-line\]" err.txt
check "the count" grep -q "^probe: 2 problems$" err.txt
"$meshrun" probe board.mesh --format json --node porch >out.txt 2>err.txt; rc=$?
check "json: exit 1" [ "$rc" = 1 ]
check "json: one object a pin" [ "$(grep -c '^{.*"node":"porch"' out.txt)" = 2 ]
check "json: the problem in the object" grep -q '"problems":\["no GPIO chip `gpiochip0`"\]' out.txt
"$meshrun" probe board.mesh --node nobody >out.txt 2>err.txt; rc=$?
check "--node nobody: exit 2" [ "$rc" = 2 ]
"$meshrun" probe board.mesh --format xml >out.txt 2>err.txt; rc=$?
check "--format xml: exit 2" [ "$rc" = 2 ]
"$meshrun" probe missing.mesh >out.txt 2>err.txt; rc=$?
check "an unreadable file: exit 2" [ "$rc" = 2 ]
echo "$pass passed, $failures failed"
[ "$failures" = 0 ]
