# Scenario: a program linked statically against libgpiod 2.x (gpiod2_smoke.c) on a real kernel chip.
# Run: tests/hw/run_vm.sh tests/hw/gpiod2_smoke.sh path/to/gpiod2_smoke
#
# GPIO_SIM_CHIPS=spare:2 gpiod2:4:button,led,edge

hw_check "gpiod2_smoke is statically linked (no libgpiod in the VM)" sh -c '! ls /usr/lib/*/libgpiod.so.3* 2>/dev/null'

hw_press gpiod2 button
gpiod2_smoke gpiod2 button led edge >/tmp/out 2>&1 &
pid=$!
hw_check "gpiod2_smoke holds led" hw_wait_requested gpiod2 led
hw_check "led reads 1 while held" hw_wait_value gpiod2 led 1
hw_check "the consumer of led is gpiod2-smoke" [ "$(hw_consumer gpiod2 led)" = gpiod2-smoke ]
hw_check "gpiod2_smoke arms the edge interrupt of line edge" hw_wait_irq gpiod2 edge
hw_press gpiod2 edge
hw_check "gpiod2_smoke ends after the edge" hw_wait_for 10 sh -c "! kill -0 $pid 2>/dev/null"
wait "$pid"
rc=$?
cat /tmp/out
hw_check "gpiod2_smoke exits 0" [ "$rc" = 0 ]
hw_check "it prints a libgpiod 2.x API version" grep -q '^libgpiod api 2\.' /tmp/out
hw_check "it found the chip by its label" grep -q "^chip $(hw_chip gpiod2) \[gpiod2\] 4 lines" /tmp/out
hw_check "it read the pressed button as 1" grep -qx 'button=1' /tmp/out
hw_check "it saw the rising edge of line edge" grep -qx 'edge rising on edge (offset 2)' /tmp/out
hw_check "led goes back to its pull (down) once released" hw_wait_value gpiod2 led 0
