# Scenario c: `debounce 400ms`: a bounce (a change and back) shorter than the debounce reports nothing,
# so the rules on the input never fire (no log line, no message sent); a press held longer fires
# once, not before the debounce time; chatter before a held press still fires once.
# The bounces are two writes to gpio-sim's `pull` in a row (well under a millisecond apart).

mr_begin debounce "a bounce shorter than the debounce fires nothing, a long press fires once"
mr_chip keypad 2 key,raw
cd "$MR_DIR"
key=$(hw_sim keypad key)/pull
raw=$(hw_sim keypad raw)/pull

mr_start debounce.mesh counter
mr_start debounce.mesh keypad
hw_check "keypad watches key" mr_wait_irq keypad key
hw_check "keypad watches raw" mr_wait_irq keypad raw
hw_check "keypad listens" mr_wait_logged keypad "listening on"
hw_check "counter listens" mr_wait_logged counter "listening on"
hw_check "key idles high (pull_up)" hw_is_value keypad key 1

# Bounces: pressed and released at once, then a burst of chatter that ends released.
echo pull-down >"$raw"; echo pull-up >"$raw"
echo pull-down >"$key"; echo pull-up >"$key"
sleep 0.1
echo pull-down >"$key"; echo pull-up >"$key"; echo pull-down >"$key"; echo pull-up >"$key"
echo pull-down >"$key"; echo pull-up >"$key"
hw_check "the bounce on raw (no debounce) reaches the node: raw 1" mr_wait_logged keypad "raw 1" 5
hw_check "... then raw 0" mr_wait_logged keypad "raw 0" 5
sleep 1
hw_check "the bounces on key fired no rule (no 'key pressed' or 'key released')" \
  sh -c "! grep -q 'key pressed\|key released' $MR_LOGS/keypad.log"
hw_check "nothing was sent for them" sh -c "! grep -q 'sending payload' $MR_LOGS/keypad.log"
hw_check "GET / shows key 0" mr_status_has 8704 '"key":0'

# A long press: reported once, after the debounce time and not before.
echo pull-down >"$key"
sleep 0.1
hw_check "100 ms into a press, nothing is reported yet" sh -c "! grep -q 'key pressed' $MR_LOGS/keypad.log"
hw_check "the long press is reported" mr_wait_logged keypad "key pressed" 5
sleep 0.6
hw_check "the long press fired exactly once" [ "$(mr_count keypad 'key pressed')" = 1 ]
hw_check "GET / shows key 1 while held" mr_status_has 8704 '"key":1'
hw_check "counter got the one press" mr_wait_logged keypad "< counted"
echo pull-up >"$key"
hw_check "the release is reported once it held" mr_wait_logged keypad "key released" 5
sleep 0.6
hw_check "... exactly once" [ "$(mr_count keypad 'key released')" = 1 ]

# Chatter, then held: one press.
echo pull-down >"$key"; echo pull-up >"$key"; echo pull-down >"$key"; echo pull-up >"$key"
echo pull-down >"$key"
sleep 1.2
hw_check "chatter then a held press fires once more (2 presses in all)" [ "$(mr_count keypad 'key pressed')" = 2 ]
# Released with chatter: one release.
echo pull-up >"$key"; echo pull-down >"$key"; echo pull-up >"$key"
sleep 1.2
hw_check "a release with chatter fires once more (2 releases in all)" [ "$(mr_count keypad 'key released')" = 2 ]
hw_check "two messages sent to counter in all" [ "$(mr_count keypad '> sending payload: 1 to counter/presses')" = 2 ]
hw_check "counter received 2 messages on presses" mr_status_has 8714 '"presses":2'
mr_end
