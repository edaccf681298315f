# Scenario a: a button pressed on one node makes a line of ANOTHER node go high, through two
# `meshrun run` processes talking websocket over loopback; released, it goes low again.
# The button is wired to ground (active_low, pull_up): pressing it pulls the line down.

mr_begin doorbell "a button on porch lights a lamp on hall (two processes, websocket over loopback)"
mr_chip porch 2 button
mr_chip hall 2 ,lamp
cd "$MR_DIR"

mr_start doorbell.mesh hall
mr_start doorbell.mesh porch
hw_check "hall holds lamp as meshrun:doorbell:hall:lamp" mr_wait_consumer hall lamp meshrun:doorbell:hall:lamp
hw_check "lamp starts low (initial 0)" hw_wait_value hall lamp 0
hw_check "porch holds button as meshrun:doorbell:porch:button" mr_wait_consumer porch button meshrun:doorbell:porch:button
hw_check "porch watches button (its edge interrupt is armed)" mr_wait_irq porch button
hw_check "button idles high: pull_up was asked of the chip" hw_wait_value porch button 1
hw_check "hall listens" mr_wait_logged hall "listening on ws://127.0.0.1:8702"
hw_check "porch listens" mr_wait_logged porch "listening on ws://127.0.0.1:8701"
hw_check "porch reads the idle button as 0 (logical, active_low)" mr_status_has 8701 '"button":0'

for round in 1 2; do
  hw_low porch button # pressed
  hw_check "press $round: the lamp on hall goes high" hw_wait_value hall lamp 1
  sleep 0.3
  hw_check "press $round: the lamp stays high while the button is held" hw_is_value hall lamp 1
  hw_check "press $round: porch reports button 1 (GET /)" mr_status_has 8701 '"button":1'
  hw_check "press $round: hall reports lamp 1 (GET /)" mr_status_has 8702 '"lamp":1'
  hw_high porch button # released
  hw_check "release $round: the lamp goes low" hw_wait_value hall lamp 0
done

hw_check "porch sent the press" mr_logged porch "> sending payload: 1 to hall/bell"
hw_check "porch got hall's ack of the press" mr_logged porch "< lamp on"
hw_check "porch got hall's ack of the release" mr_wait_logged porch "< lamp off"
hw_check "porch sent exactly 2 presses and 2 releases" \
  [ "$(mr_count porch '> sending payload: 1 to hall/bell'):$(mr_count porch '> sending payload: 0 to hall/bell')" = 2:2 ]
hw_check "hall received 4 messages on bell" mr_status_has 8702 '"bell":4'

mr_stop hall
hw_check "hall exits 0 on SIGTERM" [ "$MR_RC" = 0 ]
hw_check "hall released lamp" hw_wait_released hall lamp
mr_stop porch
hw_check "porch exits 0 on SIGTERM" [ "$MR_RC" = 0 ]
hw_check "porch released button" hw_wait_released porch button
mr_end
