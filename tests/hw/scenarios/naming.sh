# Scenario d: lines found by name on a chip found by its label (not gpiochip0: other chips come
# first), and the same chip by its name and its path with lines by offset; each request lands on
# the right line and nowhere else. A consumer longer than the kernel keeps (31 characters) is cut.

mr_begin naming "a chip by label, name and path; a line by name and offset"
mr_chip naming 8 ,,,relay,,sensor
cd "$MR_DIR"
chip=$(hw_chip naming)
hw_check "the chip labelled naming is not gpiochip0 ($chip)" [ "$chip" != gpiochip0 ]
sed "s/@CHIP@/$chip/g" naming.mesh.in >/tmp/naming.mesh

mr_start /tmp/naming.mesh board
hw_check "board holds relay (line 3, by name)" mr_wait_consumer naming 3 meshrun:naming:board:relay
hw_check "board holds sensor (line 5, by name)" mr_wait_consumer naming 5 meshrun:naming:board:sensor
hw_check "board holds led (line 6, chip by name, line by offset)" mr_wait_consumer naming 6 meshrun:naming:board:led
hw_check "board holds aux (line 7, chip by path)" mr_wait_consumer naming 7 meshrun:naming:board:aux
hw_check "a consumer over 31 characters is cut there by the kernel (meshrun:naming:board:a-pin-with)" \
  mr_wait_consumer naming 1 meshrun:naming:board:a-pin-with
for off in 0 2 4; do
  hw_check "line $off is not requested" hw_is_released naming $off
done
hw_check "relay, led and aux drive 1" sh -c "[ \"\$(cat $(hw_sim naming 3)/value $(hw_sim naming 6)/value $(hw_sim naming 7)/value | tr -d '\n')\" = 111 ]"
hw_check "the other lines stay at their pull (0)" sh -c "[ \"\$(cat $(hw_sim naming 0)/value $(hw_sim naming 2)/value $(hw_sim naming 4)/value | tr -d '\n')\" = 000 ]"
hw_check "board watches sensor" mr_wait_irq naming sensor
hw_check "board listens" mr_wait_logged board "listening on"
hw_high naming sensor
hw_check "sensor high: relay (by name) drives 0" hw_wait_value naming relay 0
hw_check "sensor high: led (by offset) drives 0" hw_wait_value naming 6 0
hw_check "sensor high: aux (by path) drives 0" hw_wait_value naming 7 0
hw_check "sensor high: the long-named pin drives 0" hw_wait_value naming 1 0
hw_low naming sensor
hw_check "sensor low: relay drives 1 again" hw_wait_value naming relay 1
hw_check "sensor low: aux drives 1 again" hw_wait_value naming 7 1
mr_end
