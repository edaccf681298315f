# Helpers for a scenario running inside the hardware-test VM (busybox sh, as root).
# Sourced before the scenario; see tests/hw/README.md. A LINE is an offset (0, 1, ...) or a line name.
#
#   hw_chip LABEL                  the chip's name, e.g. gpiochip1 (never assume gpiochip0)
#   hw_dev LABEL                   the gpio-sim platform device, e.g. gpio-sim.1
#   hw_offset LABEL LINE           the line's offset
#   hw_sim LABEL LINE              the line's sysfs folder: .../gpio-sim.N/gpiochipM/sim_gpioK (pull, value)
#   hw_pull LABEL LINE pull-up|pull-down   the outside world drives an input high or low (a
#                                  consumer's bias request sets the pull itself; writing it
#                                  afterwards is the outside world acting)
#   hw_high LABEL LINE / hw_low LABEL LINE        the same: pull-up / pull-down
#   hw_press / hw_release          = hw_high / hw_low (a button wired active high; an active-low
#                                  button is pressed with hw_low)
#   hw_value LABEL LINE            0 or 1: what the line is at (an output: what the process drives)
#   hw_consumer LABEL LINE         the consumer of a requested line, nothing when the line is free
#   hw_wait_value LABEL LINE 0|1 [TIMEOUT]   until the line is at that value
#   hw_wait_requested LABEL LINE [TIMEOUT]   until a process has requested the line
#   hw_wait_released LABEL LINE [TIMEOUT]    until it is free again
#   hw_wait_irq LABEL LINE [TIMEOUT]         until the line's edge interrupt handler is in /proc/interrupts
#                                            (drive a watched input only after that)
#   hw_wait_for TIMEOUT COMMAND...           until COMMAND succeeds (TIMEOUT in seconds, decimals allowed)
#   hw_check DESCRIPTION COMMAND...          runs COMMAND: prints "ok - ..." or "not ok - ..." and counts a failure
#   hw_fail MESSAGE                          counts a failure
#   hw_make_chip LABEL LINES [NAME0,NAME1,...]   one more gpio-sim chip (those of GPIO_SIM_CHIPS exist already)
#
# TIMEOUT is in seconds (default 10). Every hw_wait_* returns 1 and prints why on a timeout.
# The scenario fails when it exits non-zero or when any hw_check failed or hw_fail was called.

HW_CONFIGFS=/sys/kernel/config/gpio-sim
HW_FAILURES=/run/hw-failures

hw_log() { echo "hw: $*"; }

hw_fail() {
  echo "not ok - $*"
  echo "$*" >>"$HW_FAILURES"
  return 1
}

hw_check() {
  local what=$1
  shift
  if "$@"; then
    echo "ok - $what"
  else
    hw_fail "$what"
  fi
}

# Centiseconds since boot.
hw_now() {
  local up rest
  read -r up rest </proc/uptime
  echo "${up%.*}${up#*.}"
}

# hw_wait_for TIMEOUT COMMAND...: polls every 20 ms until COMMAND succeeds or TIMEOUT seconds passed.
hw_wait_for() {
  local deadline
  deadline=$(( $(hw_now) + $(awk -v t="$1" 'BEGIN { printf "%d", t * 100 }') ))
  shift
  while ! "$@"; do
    [ "$(hw_now)" -ge "$deadline" ] && return 1
    sleep 0.02
  done
}

hw_make_chip() {
  local label=$1 lines=$2 names=${3:-} d i name
  d=$HW_CONFIGFS/$label
  mkdir "$d" "$d/bank0" || { echo "hw: cannot create chip $label"; return 1; }
  echo "$lines" >"$d/bank0/num_lines"
  echo "$label" >"$d/bank0/label"
  i=0
  local IFS=,
  for name in $names; do
    if [ -n "$name" ]; then
      mkdir "$d/bank0/line$i"
      echo "$name" >"$d/bank0/line$i/name"
    fi
    i=$((i + 1))
  done
  echo 1 >"$d/live" || { echo "hw: chip $label did not go live"; return 1; }
}

hw_chip() {
  local c
  if [ -r "$HW_CONFIGFS/$1/bank0/chip_name" ]; then
    cat "$HW_CONFIGFS/$1/bank0/chip_name"
    return
  fi
  # A chip not made here: by its label, from gpiodetect's "gpiochipN [label] (n lines)".
  c=$(gpiodetect 2>/dev/null | awk -v l="[$1]" '$2 == l { print $1 }')
  [ -n "$c" ] || { echo "hw: no chip labelled $1" >&2; return 1; }
  echo "$c"
}

hw_dev() {
  cat "$HW_CONFIGFS/$1/dev_name" 2>/dev/null || { echo "hw: no gpio-sim device labelled $1" >&2; return 1; }
}

hw_offset() {
  local f
  case $2 in
    '' | *[!0-9]*) ;;
    *) echo "$2"; return 0 ;;
  esac
  for f in "$HW_CONFIGFS/$1"/bank0/line*/name; do
    [ -r "$f" ] || continue
    if [ "$(cat "$f")" = "$2" ]; then
      f=${f%/name}
      echo "${f##*/line}"
      return 0
    fi
  done
  echo "hw: chip $1 has no line named $2" >&2
  return 1
}

hw_sim() {
  local dev chip off
  dev=$(hw_dev "$1") && chip=$(hw_chip "$1") && off=$(hw_offset "$1" "$2") || return 1
  echo "/sys/devices/platform/$dev/$chip/sim_gpio$off"
}

hw_pull() {
  local d
  d=$(hw_sim "$1" "$2") || return 1
  echo "$3" >"$d/pull"
}
hw_high() { hw_pull "$1" "$2" pull-up; }
hw_low() { hw_pull "$1" "$2" pull-down; }
hw_press() { hw_pull "$1" "$2" pull-up; }
hw_release() { hw_pull "$1" "$2" pull-down; }

hw_value() {
  local d
  d=$(hw_sim "$1" "$2") || return 1
  cat "$d/value"
}

# The consumer, from the kernel's own view (debugfs): " gpio-BASE+OFF (name|consumer) out hi".
hw_consumer() {
  local chip off
  chip=$(hw_chip "$1") && off=$(hw_offset "$1" "$2") || return 1
  awk -v chip="$chip" -v off="$off" '
    /^gpiochip/ { mine = ($1 == chip ":"); split($3, r, "-"); base = r[1]; next }
    mine && $1 == "gpio-" (base + off) {
      if (index($0, "|") == 0) exit
      s = substr($0, index($0, "|") + 1); s = substr(s, 1, index(s, ")") - 1)
      sub(/ +$/, "", s); print s; exit
    }' /sys/kernel/debug/gpio
}

hw_is_value() { [ "$(hw_value "$1" "$2")" = "$3" ]; }
hw_is_requested() { [ -n "$(hw_consumer "$1" "$2")" ]; }
hw_is_released() { [ -z "$(hw_consumer "$1" "$2")" ]; }

hw_wait_value() {
  hw_wait_for "${4:-10}" hw_is_value "$1" "$2" "$3" \
    || { echo "hw: $1 line $2 did not reach $3 in ${4:-10} s (it is $(hw_value "$1" "$2"))"; return 1; }
}

hw_wait_requested() {
  hw_wait_for "${3:-10}" hw_is_requested "$1" "$2" \
    || { echo "hw: $1 line $2 was not requested in ${3:-10} s"; return 1; }
}

hw_wait_released() {
  hw_wait_for "${3:-10}" hw_is_released "$1" "$2" \
    || { echo "hw: $1 line $2 was not released in ${3:-10} s (consumer $(hw_consumer "$1" "$2"))"; return 1; }
}

# An edge handler on the line: an irq_sim interrupt whose hwirq is the line's offset and whose
# action is named after the line's consumer.
hw_has_irq() {
  local off consumer
  off=$(hw_offset "$1" "$2") && consumer=$(hw_consumer "$1" "$2") || return 1
  [ -n "$consumer" ] || return 1
  awk -v off="$off" -v c="$consumer" '
    { for (i = 2; i <= NF; i++) if ($i == "irq_sim") break }
    i < NF && $(i + 1) == off && substr($0, length($0) - length(c) + 1) == c { found = 1 }
    END { exit !found }' /proc/interrupts
}

hw_wait_irq() {
  hw_wait_for "${3:-10}" hw_has_irq "$1" "$2" \
    || { echo "hw: no edge interrupt armed on $1 line $2 in ${3:-10} s"; return 1; }
}
