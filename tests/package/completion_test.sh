#!/usr/bin/env bash
# The bash completion (made at build time from --help by tools/manpage.py) as bash runs it:
# COMP_WORDS and COMP_CWORD set as readline sets them, then _meshrun. Commands, options, the fixed
# values of options (`--format json` and `--format=json`), .mesh files and directories, node names
# of the file on the command line and of the files it includes.
#
#   completion_test.sh BUILD/meshrun.bash SOURCE/topologies
set -uo pipefail
completion=$1 topologies=$2
# shellcheck source=/dev/null
source "$completion" || { echo "FAIL  cannot source $completion"; exit 1; }

failed=0
# expect WANTED WORD...: the completions of the last WORD (of WORD number $cword when set),
# sorted and joined by spaces, are WANTED.
expect() {
  local wanted=$1; shift
  COMP_WORDS=("$@"); COMP_CWORD=${cword:-$(($# - 1))}; COMPREPLY=()
  _meshrun
  local got; got=$(printf '%s\n' "${COMPREPLY[@]}" | sort | paste -sd ' ')
  if [ "$got" = "$wanted" ]; then echo "ok    ${*@Q} (word $COMP_CWORD) -> $wanted"
  else echo "FAIL  ${*@Q}: wanted '$wanted', got '$got'"; failed=$((failed + 1)); fi
}

expect "check" meshrun ch
expect "check drive graph ls probe run test up" meshrun ""
expect "--version" meshrun --vers
expect "--to" meshrun drive --t
expect "--dashboard" meshrun up x.mesh --dash
expect "--format" meshrun check --fo
expect "json text" meshrun check --format ""
expect "json" meshrun check --format j
expect "json text" meshrun check --format = ""
expect "always auto never" meshrun check --color ""
expect "json text" meshrun run x.mesh --node a --log ""
expect "dot mermaid" meshrun graph --format ""
expect "--quiet" meshrun check -q --qu
expect "--max-steps" meshrun test --max
expect "" meshrun test --seed ""

# Files: .mesh files and directories for a command's FILE, any file for --junit, directories for --state.
work=$(mktemp -d /tmp/meshrun-completion.XXXXXX)
trap 'rm -rf "$work"' EXIT
mkdir "$work/sub" && touch "$work/a.mesh" "$work/b.txt"
cd "$work" || exit 1
expect "a.mesh sub" meshrun check ""
expect "a.mesh sub" meshrun run --sim ""
expect "a.mesh b.txt sub" meshrun test a.mesh --junit ""
expect "sub" meshrun run a.mesh --state ""

# Nodes: those of the file on the command line, and of the files it includes (fleet.mesh).
expect "buzzer clock iopin" meshrun run "$topologies/arduino.mesh" --node ""
cword=3 expect "dock-1 dock-2" meshrun run --node doc "$topologies/fleet.mesh"  # the file after the cursor
expect "daylight dock-1 dock-2" meshrun run "$topologies/fleet.mesh" --sim --node d
expect "" meshrun run missing.mesh --node ""
# A file named with a space, written quoted or escaped; one that includes itself (each file once).
printf 'mesh spaced\nnode porch {\n  every 1s -> log "x"\n}\n' > "$work/my fleet.mesh"
expect "porch" meshrun run '"my fleet.mesh"' --node ""
expect "porch" meshrun run "'my fleet.mesh'" --node ""
expect "porch" meshrun run 'my\ fleet.mesh' --node ""
printf 'include "loop.mesh"\ninclude "loop.mesh"\nnode looper {\n}\n' > "$work/loop.mesh"
started=$SECONDS
expect "looper" meshrun run loop.mesh --node ""
[ $((SECONDS - started)) -le 2 ] || { echo "FAIL  an include cycle took $((SECONDS - started)) s"; failed=$((failed + 1)); }

echo "$failed failed"
[ $failed -eq 0 ]
