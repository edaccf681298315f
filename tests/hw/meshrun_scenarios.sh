# Scenario: meshrun on gpio-sim. Runs the scenarios of tests/hw/scenarios/ named in $MR_SCENARIOS
# (default: doorbell outputs debounce naming busy) in one boot, against the binary at /test/meshrun.
# $MR_EXPECT, when set, is what `meshrun --version` must say (e.g. "libgpiod 1.6").
# Run: tests/hw/hw_test.sh meshrun BUILD/tools/meshrun [SCENARIO...]   (or gpiod2 for the 2.x build)
#
# A spare chip first, so that no scenario's chip is gpiochip0; each scenario makes its own chips.
# GPIO_SIM_CHIPS=spare:4

. /test/scenarios/lib.sh
version=$(meshrun --version 2>&1)
hw_log "$version"
if [ -n "${MR_EXPECT:-}" ]; then
  hw_check "meshrun --version names $MR_EXPECT" mr_has_text "$version" "$MR_EXPECT"
fi
for scenario in ${MR_SCENARIOS:-doorbell outputs debounce naming busy}; do
  cd /test
  . "$MR_DIR/$scenario.sh"
done
cd /test

# Kernel warnings while meshrun ran (Linux 6.1 warns when an edge interrupt is named with a `/`,
# as meshrun's consumers are: "name 'meshrun/...'" from fs/proc/generic.c). Reported; a failure
# unless MR_STRICT_DMESG=0.
warnings=$(dmesg | grep -c 'WARNING: ')
if [ "$warnings" -gt 0 ]; then
  echo "hw: note: the kernel warned $warnings times while the scenarios ran:"
  dmesg | grep -A1 'cut here' | grep -v 'cut here\|^--' | sed 's/^\[[ 0-9.]*\] //' | sort | uniq -c | head -n 10
  if [ "${MR_STRICT_DMESG:-1}" = 1 ]; then hw_fail "the kernel warned $warnings times (MR_STRICT_DMESG=1)"; fi
fi
true
