# Scenario: the gpiod 1.6 tools against a real kernel GPIO chip (gpio-sim), inside the VM.
# Run: tests/hw/run_vm.sh tests/hw/smoke.sh
#
# Two chips, so that the one under test is not gpiochip0: it is found by its label.
# GPIO_SIM_CHIPS=spare:4 smoke:8:led,button,edge

chip=$(hw_chip smoke)
hw_log "chip smoke is $chip"

# The chip by its label, the line by its name.
hw_check "gpiodetect lists the chip labelled smoke with 8 lines" \
  sh -c "gpiodetect | grep -qx '$chip \[smoke\] (8 lines)'"
hw_check "the chip labelled smoke is not gpiochip0" [ "$chip" != gpiochip0 ]
hw_check "gpiofind finds the line named led at offset 0" [ "$(gpiofind led)" = "$chip 0" ]
hw_check "gpioinfo names line 1 button" sh -c "gpioinfo $chip | grep -q 'line *1: *\"button\" *unused'"

# An output: what the process drives, read through gpio-sim's sysfs while the line is held.
gpioset --mode=signal "$chip" "$(hw_offset smoke led)=1" &
pid=$!
hw_check "gpioset requests led" hw_wait_requested smoke led
hw_check "the consumer of led is gpioset" [ "$(hw_consumer smoke led)" = gpioset ]
hw_check "led driven high reads 1 in sysfs" hw_wait_value smoke led 1
kill "$pid"; wait "$pid"
hw_check "led is released when gpioset ends" hw_wait_released smoke led

gpioset --mode=signal "$chip" "$(hw_offset smoke led)=0" &
pid=$!
hw_wait_requested smoke led
hw_press smoke led # the outside pulling cannot beat a driven output
hw_check "led driven low reads 0 in sysfs, though pulled up" hw_wait_value smoke led 0
kill "$pid"; wait "$pid"
hw_check "led released goes back to its pull (up)" hw_wait_value smoke led 1
hw_release smoke led

# An input: the outside world presses and releases the button.
button=$(hw_offset smoke button)
hw_press smoke button
hw_check "gpioget reads the pressed button as 1" [ "$(gpioget "$chip" "$button")" = 1 ]
hw_release smoke button
hw_check "gpioget reads the released button as 0" [ "$(gpioget "$chip" "$button")" = 0 ]
hw_press smoke button
hw_check "gpioget -l (active low) reads the pressed button as 0" [ "$(gpioget -l "$chip" "$button")" = 0 ]
hw_release smoke button

# An edge, seen by gpiomon: drive the input only once the interrupt is armed.
gpiomon --num-events=2 "$chip" "$(hw_offset smoke edge)" >/tmp/gpiomon.out 2>&1 &
pid=$!
hw_check "gpiomon arms the edge interrupt of line edge" hw_wait_irq smoke edge
hw_press smoke edge
sleep 0.1
hw_release smoke edge
hw_check "gpiomon ends after two events" hw_wait_for 10 sh -c "! kill -0 $pid 2>/dev/null"
wait "$pid"
cat /tmp/gpiomon.out
hw_check "gpiomon saw the rising edge then the falling edge" \
  sh -c "grep -o '[A-Z]* EDGE' /tmp/gpiomon.out | tr '\n' , | grep -qx 'RISING EDGE,FALLING EDGE,'"
hw_check "edge is released when gpiomon ends" hw_wait_released smoke edge
