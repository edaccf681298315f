# Scenario f: `meshrun probe FILE [--node NAME] [--format text|json]` looks at the board without
# taking any line: exit 0 when every pin is there and free, 1 with a [gpio-line] error at each
# pin's declaration when one has a problem (a missing chip or line, a line held by another
# consumer, a name whose number is not its offset or the other way round), 2 on bad usage.
# When the binary has no `probe` command (`meshrun --help` lists none), it says SKIPPED and checks nothing.

mr_begin probe "meshrun probe: a right file exits 0, a mismatched one 1 with each problem"
mr_chip probe 8 GPIO0,GPIO1,GPIO7,GPIO3,button,led,,GPIO12
cd "$MR_DIR"
chip=$(hw_chip probe)
out=$MR_LOGS/probe.out
MR_EXTRA_LOGS="$out"

mr_try "$out" meshrun --help
if ! grep -q '^ *probe ' "$out"; then
  echo "SKIPPED: scenario probe: this meshrun has no probe command (meshrun --help lists none)"
else
  mr_try "$out" meshrun probe probe_ok.mesh
  cat "$out"
  hw_check "a right file: exit 0" [ "$MR_RC" = 0 ]
  hw_check "... and no error" sh -c "! grep -q 'error:' $out"
  hw_check "it names the chip it found" mr_has "$out" "$chip"
  mr_try "$out" meshrun probe probe_ok.mesh --node board --format json
  cat "$out"
  hw_check "--node board --format json: exit 0" [ "$MR_RC" = 0 ]
  hw_check "... names board's pins" sh -c "grep -q button $out && grep -q GPIO3 $out"
  hw_check "... and not other's" sh -c "! grep -q '\"spare\"' $out"
  for l in 0 1 2 3 4 5 6 7; do
    hw_check "probe took no line ($l is free)" hw_is_released probe $l
  done

  gpioset --mode=signal "$chip" 0=1 &
  holder=$!
  hw_check "gpioset holds GPIO0" mr_wait_consumer probe GPIO0 gpioset
  mr_try "$out" meshrun probe probe_bad.mesh
  cat "$out"
  hw_check "a mismatched file: exit 1" [ "$MR_RC" = 1 ]
  hw_check "no problem with led (line 5)" sh -c "! grep -q '^probe_bad.mesh:5:[0-9]*: error' $out"
  hw_check "held by gpioset, at probe_bad.mesh:6" \
    sh -c "grep -q '^probe_bad.mesh:6:[0-9]*: error: .*gpioset.* \[gpio-line\]' $out"
  hw_check "GPIO7 found at offset 2, at probe_bad.mesh:7" \
    sh -c "grep -q '^probe_bad.mesh:7:[0-9]*: error: .*GPIO7.*2.* \[gpio-line\]' $out"
  hw_check "offset 7 is GPIO12, at probe_bad.mesh:8" \
    sh -c "grep -q '^probe_bad.mesh:8:[0-9]*: error: .*GPIO12.* \[gpio-line\]' $out"
  hw_check "no line buton, at probe_bad.mesh:9" \
    sh -c "grep -q '^probe_bad.mesh:9:[0-9]*: error: .*buton.* \[gpio-line\]' $out"
  hw_check "no chip nochip, at probe_bad.mesh:10" \
    sh -c "grep -q '^probe_bad.mesh:10:[0-9]*: error: .*nochip.* \[gpio-line\]' $out"
  mr_try "$out" meshrun probe probe_bad.mesh --format json
  cat "$out"
  hw_check "--format json: exit 1 too" [ "$MR_RC" = 1 ]
  hw_check "gpioset still holds GPIO0, driving 1" sh -c "[ \"\$(cat $(hw_sim probe GPIO0)/value)\" = 1 ]"
  kill "$holder"
  wait "$holder"

  # A node that runs already: probing its own file finds its lines held by it.
  mr_start probe_ok.mesh board
  hw_check "board holds led" mr_wait_consumer probe led meshrun:probing:board:led
  mr_try "$out" meshrun probe probe_ok.mesh --node board
  cat "$out"
  hw_check "probing a node that runs: exit 1" [ "$MR_RC" = 1 ]
  hw_check "... naming its consumer" mr_has "$out" meshrun:probing:board:led
  hw_check "... and the node keeps its lines" mr_is_consumer probe led meshrun:probing:board:led
  mr_stop board

  mr_try "$out" meshrun probe
  hw_check "no file: exit 2" [ "$MR_RC" = 2 ]
  mr_try "$out" meshrun probe probe_ok.mesh --format xml
  hw_check "--format xml: exit 2" [ "$MR_RC" = 2 ]
  mr_try "$out" meshrun probe probe_ok.mesh --node nobody
  hw_check "--node nobody: exit 2" [ "$MR_RC" = 2 ]
fi
mr_end
