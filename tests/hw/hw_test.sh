#!/usr/bin/env bash
# The hardware tests as ctest runs them: set-up first (exit 77, ctest's SKIP, with the reason when
# something cannot be had), then one scenario in the VM.
#
#   tests/hw/hw_test.sh smoke            the gpiod 1.6 tools (smoke.sh)
#   tests/hw/hw_test.sh gpiod2 [WORKDIR] a program linked statically against libgpiod 2.x (gpiod2_smoke.sh)
#   tests/hw/hw_test.sh run [RUN_VM_OPTIONS] SCENARIO [FILE...]   any scenario (arguments of run_vm.sh)
#   tests/hw/hw_test.sh meshrun [--expect TEXT] MESHRUN|gpiod2 [SCENARIO...]
#                                        meshrun's scenarios (tests/hw/scenarios/, default: all but
#                                        probe) in one boot; gpiod2: the binary of build_gpiod2.sh;
#                                        --expect: what `meshrun --version` must say
set -uo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
SKIP=77
case ${1:-} in
  smoke | gpiod2 | run | meshrun) ;;
  *) sed -n '2,11p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//' >&2; exit 2 ;;
esac

out=$(bash "$here/setup.sh" 2>&1)
rc=$?
echo "$out"
if [ "$rc" -ne 0 ]; then
  if [ "$rc" -eq "$SKIP" ]; then
    echo "SKIPPED: $(echo "$out" | sed -n 's/^hw setup: SKIP: //p' | tail -n 1)"
    exit "$SKIP"
  fi
  echo "hw test: set-up failed (exit $rc)"
  exit 1
fi
# shellcheck source=/dev/null
. "${MESHRUN_HW_CACHE:-/var/cache/meshrun-hw}/env.sh"

case ${1:-} in
  smoke)
    exec bash "$here/run_vm.sh" "$here/smoke.sh" ;;
  run)
    shift
    exec bash "$here/run_vm.sh" "$@" ;;
  meshrun)
    shift
    expect=
    if [ "${1:-}" = --expect ]; then expect=$2; shift 2; fi
    bin=${1:-}
    [ -n "$bin" ] || { sed -n '2,11p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//' >&2; exit 2; }
    shift
    scenarios=${*:-doorbell outputs debounce naming busy}
    if [ "$bin" = gpiod2 ]; then
      bin=$(bash "$here/build_gpiod2.sh" --check)
      rc=$?
      [ "$rc" -eq "$SKIP" ] && { echo "SKIPPED: no libgpiod 2.x build (tests/hw/build_gpiod2.sh)"; exit "$SKIP"; }
      [ "$rc" -eq 0 ] || { echo "hw test: tests/hw/build_gpiod2.sh failed (exit $rc)"; exit 1; }
    fi
    [ -x "$bin" ] || { echo "hw test: no meshrun at $bin"; exit 1; }
    version=$("$bin" --version 2>&1)
    echo "hw test: $bin: $version"
    case $version in
      *"libgpiod none"* | *"(none,"*) echo "SKIPPED: $bin was built without libgpiod ($version)"; exit "$SKIP" ;;
    esac
    if [ -n "$expect" ] && [[ $version != *"$expect"* ]]; then
      echo "SKIPPED: $bin is not a $expect build ($version)"
      exit "$SKIP"
    fi
    # `meshrun probe` comes in another branch: until this binary has it, its scenario is skipped.
    if [ "$scenarios" = probe ] && ! grep -q '^ *probe ' <<<"$("$bin" --help 2>&1)"; then
      echo "SKIPPED: this meshrun has no probe command yet (\`$bin --help\` lists none)"
      exit "$SKIP"
    fi
    exec bash "$here/run_vm.sh" --timeout "${MESHRUN_HW_TIMEOUT:-300}" --env "MR_SCENARIOS=$scenarios" \
      --env "MR_EXPECT=$expect" "$here/meshrun_scenarios.sh" "$bin=/test/meshrun" "$here/scenarios" ;;
  gpiod2)
    work=${2:-}
    if [ -z "$work" ]; then
      work=$(mktemp -d "${TMPDIR:-/tmp}/meshrun-hw-gpiod2.XXXXXX")
      trap 'rm -rf "$work"' EXIT
    fi
    mkdir -p "$work"
    ${CC:-cc} -static -O2 -Wall -Wextra -Werror -I"$HW_LIBGPIOD2_INCLUDE" "$here/gpiod2_smoke.c" \
      "$HW_LIBGPIOD2_LIB/libgpiod.a" -o "$work/gpiod2_smoke" || { echo "hw test: gpiod2_smoke.c did not build"; exit 1; }
    bash "$here/run_vm.sh" "$here/gpiod2_smoke.sh" "$work/gpiod2_smoke" ;;
  *)
    sed -n '2,11p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//' >&2
    exit 2 ;;
esac
