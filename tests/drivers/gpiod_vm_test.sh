#!/usr/bin/env bash
# The gpiod driver on a real kernel's GPIO chips: runs gpiod_check (tests/drivers/gpiod_check.cpp,
# linked statically) as root inside the hardware-test VM (tests/hw/run_vm.sh: qemu, Debian's
# kernel, gpio-sim). gpiod_check makes its own gpio-sim chips; the VM's chip `spare` is there so
# that they are not gpiochip0.
#
#   tests/drivers/gpiod_vm_test.sh GPIOD_CHECK...   one or more builds of it (libgpiod 1.6, 2.x)
#
# Exit: 0 every build passed; 1 one failed; 77 (skipped) without the VM harness or its cache
# (tests/hw/setup.sh makes the cache).
set -uo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
run_vm=${MESHRUN_HW_RUN_VM:-$here/../hw/run_vm.sh}
[ $# -ge 1 ] || { sed -n '2,10p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//' >&2; exit 2; }
[ -f "$run_vm" ] || { echo "SKIPPED: no VM harness ($run_vm)"; exit 77; }

work=$(mktemp -d "${TMPDIR:-/tmp}/meshrun-gpiod-vm.XXXXXX")
trap 'rm -rf "$work"' EXIT
files=()
{
  echo "# GPIO_SIM_CHIPS=spare:4"
  i=0
  for check in "$@"; do
    [ -x "$check" ] || { echo "gpiod_vm_test: no program $check" >&2; exit 2; }
    i=$((i + 1))
    files+=("$check=/test/gpiod_check_$i")
    echo "hw_check \"gpiod_check $i ($check)\" gpiod_check_$i"
  done
} >"$work/scenario.sh"
bash "$run_vm" --timeout "${MESHRUN_HW_TIMEOUT:-180}" "$work/scenario.sh" "${files[@]}"
rc=$?
case $rc in
  0 | 1 | 77) exit "$rc" ;;
  *) echo "gpiod_vm_test: the VM gave no result (exit $rc)"; exit 1 ;;
esac
