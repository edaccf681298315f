# The VM side of bench/hw_latency.sh (a scenario of tests/hw/run_vm.sh): for each meshrun binary in
# $BENCH_BINS, two nodes (switch, lamp) of hw_latency.mesh; hw_latency presses switch's button
# $BENCH_PRESSES times and times the lamp; then the same on one node (solo: button and lamp on one
# board, no network); then the raw TCP round trip in the same VM.
# GPIO_SIM_CHIPS=spare:2 bench-a:1:key bench-b:1:light bench-c:2:key,light

. /test/scenarios/lib.sh # mr_wait_irq

pull=$(hw_sim bench-a key)/pull
value=$(hw_sim bench-b light)/value
for bin in $BENCH_BINS; do
  echo "bench: $bin: $("./$bin" --version)"
  "./$bin" run hw_latency.mesh --node lamp >/tmp/lamp.log 2>&1 &
  lamp=$!
  "./$bin" run hw_latency.mesh --node switch >/tmp/switch.log 2>&1 &
  switch=$!
  if mr_wait_irq bench-a key && hw_wait_requested bench-b light && hw_wait_value bench-b light 0 &&
    hw_wait_for 10 grep -q listening /tmp/lamp.log; then
    hw_latency press "$pull" "$value" "$BENCH_PRESSES" "$BENCH_WARMUP" >/tmp/press.out || hw_fail "$bin: hw_latency press failed"
    sed "s|^|bench: $bin |" /tmp/press.out
  else
    hw_fail "$bin: the nodes did not start"
  fi
  kill "$switch" "$lamp"
  wait "$switch" "$lamp"
  if [ -s "$HW_FAILURES" ]; then
    echo "--- switch ---"; cat /tmp/switch.log; echo "--- lamp ---"; tail -n 20 /tmp/lamp.log
  fi
  hw_wait_released bench-a key
  hw_wait_released bench-b light

  "./$bin" run hw_latency.mesh --node solo >/tmp/solo.log 2>&1 &
  solo=$!
  if mr_wait_irq bench-c key && hw_wait_requested bench-c light && hw_wait_for 10 grep -q listening /tmp/solo.log; then
    hw_latency press "$(hw_sim bench-c key)/pull" "$(hw_sim bench-c light)/value" "$BENCH_PRESSES" "$BENCH_WARMUP" \
      >/tmp/press.out || hw_fail "$bin: hw_latency press (solo) failed"
    sed "s|^|bench: $bin solo-|" /tmp/press.out
  else
    hw_fail "$bin: solo did not start"
  fi
  kill "$solo"
  wait "$solo"
  [ -s "$HW_FAILURES" ] && { echo "--- solo ---"; cat /tmp/solo.log; }
  hw_wait_released bench-c light
done
hw_latency tcp "$BENCH_TCP" >/tmp/tcp.out || hw_fail "hw_latency tcp failed"
sed 's|^|bench: |' /tmp/tcp.out
