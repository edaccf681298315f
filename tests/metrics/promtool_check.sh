#!/usr/bin/env bash
# What the metrics render (for a run of topologies/arduino.mesh, one node, no events yet, names
# that need escaping) passes `promtool check metrics`: the exposition format and its lint.
#   bash tests/metrics/promtool_check.sh path/to/metrics_render_sample
# Exit: 0 every file passed; 1 one did not; 77 (skipped) without promtool (Debian: apt package prometheus).
set -uo pipefail
sample=$1
promtool=$(command -v promtool) || { echo "SKIPPED: promtool is not installed (apt-get install prometheus)"; exit 77; }
dir=$(mktemp -d)
trap 'rm -rf "$dir"' EXIT
"$sample" "$dir" || { echo "FAIL: $sample did not write its files"; exit 1; }
failed=0
for f in fresh fleet node escaping; do
  if ! [ -s "$dir/$f.prom" ]; then
    echo "FAIL  $f.prom: empty"; failed=1; continue
  fi
  if out=$("$promtool" check metrics <"$dir/$f.prom" 2>&1); then
    echo "ok    $f.prom ($(grep -vc '^#' "$dir/$f.prom") samples)"
  else
    echo "FAIL  $f.prom: promtool check metrics says:"; echo "$out"; failed=1
    echo "--- $f.prom"; cat "$dir/$f.prom"
  fi
done
exit $failed
