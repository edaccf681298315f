# Scenario e: a line that cannot be had at start: `meshrun run` exits 1 with a [gpio-line] error at
# the pin's declaration (file:line:col), naming the holder, and notes saying what to do; the lines it
# had requested before are released. Holders: gpioset, another meshrun fleet, the same node twice.
# Also a line or chip this board does not have.

mr_begin busy "a busy line is a clear error naming the pin's declaration and the holder"
mr_chip busy 4 free,bell
cd "$MR_DIR"
chip=$(hw_chip busy)
out=$MR_LOGS/busy.out
MR_EXTRA_LOGS="$out"

# Held by gpioset.
gpioset --mode=signal "$chip" 1=1 &
holder=$!
hw_check "gpioset holds bell" mr_wait_consumer busy bell gpioset
mr_try "$out" meshrun run busy.mesh --node first
cat "$out"
hw_check "held by gpioset: meshrun exits 1" [ "$MR_RC" = 1 ]
hw_check "the error is at bell's declaration, busy.mesh:6:5, kind gpio-line" \
  mr_has "$out" "busy.mesh:6:5: error: node \`first\` cannot have pin \`bell\`: line 1 (\`bell\`) of $chip is busy: held by \`gpioset\` [gpio-line]"
hw_check "it shows the declaration" mr_has "$out" 'pin bell = out "busy" "bell" initial 0'
hw_check "a note says what to do" grep -q "busy.mesh:6:5: note: " "$out"
hw_check "free, requested before bell, was released" hw_is_released busy free
hw_check "gpioset still holds bell, still driving 1" sh -c "[ \"\$(cat $(hw_sim busy bell)/value)\" = 1 ]"
hw_check "... as gpioset" mr_is_consumer busy bell gpioset
kill "$holder"
wait "$holder"
hw_check "gpioset let bell go" hw_wait_released busy bell

# Held by another meshrun: a node of another fleet declares the same line.
mr_start busy.mesh first
hw_check "first holds bell" mr_wait_consumer busy bell meshrun:busy:first:bell
hw_check "first listens" mr_wait_logged first "listening on"
mr_try "$out" meshrun run busy2.mesh --node second
cat "$out"
hw_check "held by another meshrun: exit 1" [ "$MR_RC" = 1 ]
hw_check "the error is at chime's declaration, busy2.mesh:5:5, naming the holder" \
  mr_has "$out" "busy2.mesh:5:5: error: node \`second\` cannot have pin \`chime\`: line 1 (\`bell\`) of $chip is busy: held by \`meshrun:busy:first:bell\` [gpio-line]"
hw_check "a note says another meshrun holds it" grep -q "busy2.mesh:5:5: note: another meshrun holds it" "$out"

# The same node started twice: its first pin is held by itself.
mr_try "$out" meshrun run busy.mesh --node first
cat "$out"
hw_check "the same node twice: exit 1" [ "$MR_RC" = 1 ]
hw_check "the error is at free's declaration, held by meshrun:busy:first:free" \
  mr_has "$out" "busy.mesh:5:5: error: node \`first\` cannot have pin \`free\`: line 0 (\`free\`) of $chip is busy: held by \`meshrun:busy:first:free\` [gpio-line]"
hw_check "a note asks whether the node runs already" grep -q "busy.mesh:5:5: note: .*running already" "$out"
hw_check "the running node kept its lines" mr_is_consumer busy bell meshrun:busy:first:bell
hw_check "... and still drives free 1" hw_is_value busy free 1
mr_stop first
hw_check "first exits 0 on SIGTERM" [ "$MR_RC" = 0 ]

# Lines and chips this board does not have.
mr_try "$out" meshrun run missing.mesh --node typo
cat "$out"
hw_check "a misspelt line name: exit 1" [ "$MR_RC" = 1 ]
hw_check "no line named bel, at missing.mesh:5:5" \
  mr_has "$out" "missing.mesh:5:5: error: node \`typo\` cannot have pin \`bell\`: no line named \`bel\` on $chip \`busy\` (4 lines) [gpio-line]"
hw_check "did you mean bell" mr_has "$out" "did you mean \`bell\` (offset 1)?"
mr_try "$out" meshrun run missing.mesh --node nochip
cat "$out"
hw_check "a chip this board does not have: exit 1" [ "$MR_RC" = 1 ]
hw_check "no chip nochip, at missing.mesh:10:5" \
  mr_has "$out" "missing.mesh:10:5: error: node \`nochip\` cannot have pin \`horn\`: no GPIO chip named or labelled \`nochip\` [gpio-line]"
hw_check "the chips of this machine are listed" mr_has "$out" "$chip \`busy\` (4 lines)"
mr_try "$out" meshrun run missing.mesh --node nooffset
cat "$out"
hw_check "an offset past the chip's lines: exit 1" [ "$MR_RC" = 1 ]
hw_check "no line 9, at missing.mesh:15:5" \
  mr_has "$out" "missing.mesh:15:5: error: node \`nooffset\` cannot have pin \`horn\`: no line 9 on $chip \`busy\` (4 lines) [gpio-line]"
for l in free bell 2 3; do
  hw_check "line $l of busy is free after all this" hw_wait_released busy $l 2
done
mr_end
