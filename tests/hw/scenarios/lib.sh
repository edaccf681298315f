# Helpers for the meshrun scenarios of tests/hw/scenarios/ (busybox sh, inside the VM, as root), on
# top of tests/hw/guest/lib.sh. The scenarios and their .mesh files are in $MR_DIR; the binary under
# test is $MR_BIN.
#
#   mr_begin NAME DESCRIPTION    starts a scenario: a header, and what mr_end needs
#   mr_end                       stops the nodes the scenario started; prints their logs when one of
#                                its checks failed (or always with MR_VERBOSE=1)
#   mr_chip LABEL LINES [NAMES]  a gpio-sim chip, made unless it exists
#   mr_start FILE NODE [ARGS]    `meshrun run FILE --node NODE` in the background; its output (stdout
#                                and stderr) in $MR_LOGS/NODE.log
#   mr_stop NODE                 SIGTERM, then waits for it to end (SIGKILL after 10 s)
#   mr_running NODE              it runs
#   mr_log NODE                  its output
#   mr_logged NODE TEXT          some line of its output contains TEXT
#   mr_count NODE TEXT           how many lines contain TEXT
#   mr_wait_logged NODE TEXT [TIMEOUT]
#   mr_status PORT               the node's `GET /` (status JSON), through busybox wget
#   mr_status_has PORT TEXT      the status contains TEXT
#   mr_consumer LABEL LINE       the line's consumer, whole (gpioinfo; hw_consumer cuts it at 20)
#   mr_is_consumer LABEL LINE CONSUMER
#   mr_wait_consumer LABEL LINE CONSUMER [TIMEOUT]
#   mr_wait_irq LABEL LINE [TIMEOUT]   hw_wait_irq for meshrun's long consumers
#   mr_try OUT COMMAND...        runs COMMAND (at most 30 s) with stdout and stderr in OUT; $MR_RC is its exit
#   mr_has FILE TEXT             FILE contains TEXT (fixed string)
#   mr_has_text TEXT PART        TEXT contains PART

MR_DIR=${MR_DIR:-/test/scenarios}
MR_BIN=${MR_BIN:-meshrun}
MR_LOGS=${MR_LOGS:-/tmp/mr}
mkdir -p "$MR_LOGS"

mr_failures() { wc -l <"$HW_FAILURES"; }

mr_begin() {
  MR_NAME=$1
  MR_NODES=
  MR_FAILED_BEFORE=$(mr_failures)
  MR_T0=$(hw_now)
  echo
  echo "=== scenario $1: $2"
}

mr_end() {
  local n
  for n in $MR_NODES; do
    mr_running "$n" && mr_stop "$n"
  done
  if [ "$(mr_failures)" -gt "$MR_FAILED_BEFORE" ] || [ "${MR_VERBOSE:-0}" = 1 ]; then
    for n in $MR_NODES; do
      echo "--- log of node $n ($MR_NAME) ---"
      cat "$MR_LOGS/$n.log"
    done
    for n in $MR_EXTRA_LOGS; do
      echo "--- $n ($MR_NAME) ---"
      cat "$n"
    done
    echo "=== scenario $MR_NAME: FAILED ($(($(mr_failures) - MR_FAILED_BEFORE)) checks)"
  else
    echo "=== scenario $MR_NAME: passed in $(awk -v c=$(($(hw_now) - MR_T0)) 'BEGIN { printf "%.1f", c / 100 }') s"
  fi
  MR_EXTRA_LOGS=
  MR_NODES=
}

mr_chip() {
  [ -d "$HW_CONFIGFS/$1" ] || hw_make_chip "$@"
}

mr_start() {
  local file=$1 node=$2
  shift 2
  case " $MR_NODES " in *" $node "*) ;; *) MR_NODES="$MR_NODES $node" ;; esac
  "$MR_BIN" run "$file" --node "$node" --grace 1 "$@" >"$MR_LOGS/$node.log" 2>&1 &
  echo $! >"$MR_LOGS/$node.pid"
}

mr_running() {
  local pid
  pid=$(cat "$MR_LOGS/$1.pid" 2>/dev/null) || return 1
  [ -n "$pid" ] && [ -d "/proc/$pid" ] && ! grep -q '^State:.*Z' "/proc/$pid/status" 2>/dev/null
}

mr_stop() {
  local pid killer
  pid=$(cat "$MR_LOGS/$1.pid" 2>/dev/null) || return 0
  kill -TERM "$pid" 2>/dev/null
  (sleep 10; kill -KILL "$pid") 2>/dev/null &
  killer=$!
  wait "$pid" 2>/dev/null
  MR_RC=$?
  kill "$killer" 2>/dev/null
  rm -f "$MR_LOGS/$1.pid"
  return 0
}

mr_log() { cat "$MR_LOGS/$1.log"; }
mr_logged() { grep -qF -- "$2" "$MR_LOGS/$1.log"; }
mr_count() { grep -cF -- "$2" "$MR_LOGS/$1.log"; }
mr_wait_logged() {
  hw_wait_for "${3:-10}" mr_logged "$1" "$2" || { echo "hw: node $1 did not log '$2' in ${3:-10} s"; return 1; }
}

mr_status() { wget -q -O - "http://127.0.0.1:$1/" 2>/dev/null; }

# The consumer from the kernel's line info (gpioinfo), whole: debugfs, which hw_consumer reads,
# cuts it at 20 characters, and meshrun's are longer (meshrun:MESH:NODE:PIN).
mr_consumer() {
  local chip off
  chip=$(hw_chip "$1") && off=$(hw_offset "$1" "$2") || return 1
  gpioinfo "$chip" | awk -v off="$off" '
    $1 == "line" && $2 == off ":" {
      s = $0; sub(/^[ \t]*line +[0-9]+: +/, "", s)
      if (substr(s, 1, 1) == "\"") { s = substr(s, 2); s = substr(s, index(s, "\"") + 1) } else sub(/^unnamed/, "", s)
      sub(/^ +/, "", s)
      if (substr(s, 1, 1) == "\"") { s = substr(s, 2); print substr(s, 1, index(s, "\"") - 1) }
      exit
    }'
}
mr_is_consumer() { [ "$(mr_consumer "$1" "$2")" = "$3" ]; }
mr_wait_consumer() {
  hw_wait_for "${4:-10}" mr_is_consumer "$1" "$2" "$3" \
    || { echo "hw: the consumer of $1 line $2 is '$(mr_consumer "$1" "$2")', not '$3'"; return 1; }
}

# The line's edge interrupt is armed (hw_wait_irq, with the whole consumer).
mr_has_irq() {
  local off consumer
  off=$(hw_offset "$1" "$2") && consumer=$(mr_consumer "$1" "$2") || return 1
  [ -n "$consumer" ] || return 1
  awk -v off="$off" -v c="$consumer" '
    { for (i = 2; i <= NF; i++) if ($i == "irq_sim") break }
    i < NF && $(i + 1) == off && substr($0, length($0) - length(c) + 1) == c { found = 1 }
    END { exit !found }' /proc/interrupts
}
mr_wait_irq() {
  hw_wait_for "${3:-10}" mr_has_irq "$1" "$2" \
    || { echo "hw: no edge interrupt armed on $1 line $2 in ${3:-10} s"; return 1; }
}

mr_try() {
  local out=$1
  shift
  timeout 30 "$@" >"$out" 2>&1
  MR_RC=$?
  return 0
}

mr_has() { grep -qF -- "$2" "$1"; }
mr_status_has() { mr_status "$1" | grep -qF -- "$2"; }
mr_has_text() { case $1 in *"$2"*) return 0 ;; *) return 1 ;; esac; }
