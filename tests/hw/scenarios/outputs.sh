# Scenario b: outputs follow `initial` and `active_low`: the physical levels (gpio-sim's sysfs) right
# after the request, then after writes triggered by messages from two other meshrun processes.

mr_begin outputs "outputs follow initial and active_low, at the request and on writes"
mr_chip panel 4 plain,inverted,lamp,bare
cd "$MR_DIR"

# The outside world pulls every line the other way first: an output must beat its pull.
hw_low panel plain
hw_high panel inverted
hw_low panel lamp
hw_high panel bare

mr_start outputs.mesh panel
hw_check "panel holds the four lines" hw_wait_requested panel bare
hw_check "panel listens" mr_wait_logged panel "listening on ws://127.0.0.1:8703"
hw_check "at start, plain (initial 1) drives 1" hw_is_value panel plain 1
hw_check "at start, inverted (active_low, initial 1) drives 0" hw_is_value panel inverted 0
hw_check "at start, lamp (active_low, initial 0) drives 1" hw_is_value panel lamp 1
hw_check "at start, bare (no initial) drives 0" hw_is_value panel bare 0
hw_check "GET / shows the logical levels 1 1 0 0" \
  mr_status_has 8703 '"pins":{"bare":0,"inverted":1,"lamp":0,"plain":1}'

mr_start outputs.mesh zero
hw_check "zero's message is acknowledged" mr_wait_logged zero "< set 0"
hw_check "written 0: plain drives 0" hw_wait_value panel plain 0
hw_check "written 0: inverted (active_low) drives 1" hw_is_value panel inverted 1
hw_check "written 0: lamp (active_low) drives 1" hw_is_value panel lamp 1
hw_check "written 0: bare drives 0" hw_is_value panel bare 0
mr_stop zero

mr_start outputs.mesh one
hw_check "one's message is acknowledged" mr_wait_logged one "< set 1"
hw_check "written 1: plain drives 1" hw_wait_value panel plain 1
hw_check "written 1: inverted (active_low) drives 0" hw_is_value panel inverted 0
hw_check "written 1: lamp (active_low) drives 0" hw_is_value panel lamp 0
hw_check "written 1: bare drives 1" hw_is_value panel bare 1
hw_check "GET / shows the logical levels 1 1 1 1" \
  mr_status_has 8703 '"pins":{"bare":1,"inverted":1,"lamp":1,"plain":1}'
mr_stop one

mr_stop panel
hw_check "panel exits 0 on SIGTERM" [ "$MR_RC" = 0 ]
hw_check "panel released its lines" hw_wait_released panel plain
hw_check "a released line goes back to its pull (plain: down)" hw_wait_value panel plain 0
mr_end
