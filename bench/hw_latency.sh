#!/usr/bin/env bash
# GPIO edge to remote output, end to end, on a real kernel's GPIO chips: inside the hardware-test VM
# (tests/hw/run_vm.sh: qemu, Debian's kernel, gpio-sim), two `meshrun run` processes, `switch`
# watching a button and `lamp` driving a line, talk websocket over loopback. A small static C
# program (hw_latency.c) presses the button through gpio-sim's sysfs and reads the lamp's line in a
# tight loop: the time from the edge to the remote output changing, p50 and p99, beside a raw TCP
# round trip measured in the same VM run.
#
#   bench/hw_latency.sh [--smoke] [--presses N] [--tcp N] MESHRUN|gpiod2 ...
#
# MESHRUN   a meshrun binary (build/tools/meshrun: libgpiod 1.6 on Debian 12); `gpiod2` is the
#           libgpiod 2.x build of tests/hw/build_gpiod2.sh. Several are measured in one boot.
# --presses N  presses per binary (300), after 20 unmeasured; --tcp N round trips (2000)
# --smoke      20 presses, 200 round trips: that it runs (ctest)
#
# Exit: 0 it ran (whatever the figures); 1 something could not run; 77 the VM harness cannot be had
# (tests/hw/setup.sh says why).
set -uo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
hw=$here/../tests/hw
SKIP=77
presses=300
warmup=20
tcp=2000
usage() { sed -n '2,18p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//' >&2; exit 2; }
bins=()
while [ $# -gt 0 ]; do
  case $1 in
    --smoke) presses=20; warmup=5; tcp=200; shift ;;
    --presses) presses=$2; shift 2 ;;
    --tcp) tcp=$2; shift 2 ;;
    -h | --help) usage ;;
    -*) echo "hw_latency: unknown option $1" >&2; usage ;;
    *) bins+=("$1"); shift ;;
  esac
done
[ ${#bins[@]} -ge 1 ] || usage

out=$(bash "$hw/setup.sh" 2>&1)
rc=$?
if [ "$rc" -ne 0 ]; then
  echo "$out"
  [ "$rc" -eq "$SKIP" ] && { echo "SKIPPED: $(echo "$out" | sed -n 's/^hw setup: SKIP: //p' | tail -n 1)"; exit "$SKIP"; }
  echo "hw_latency: the hardware-test set-up failed (exit $rc)"
  exit 1
fi

work=$(mktemp -d "${TMPDIR:-/tmp}/meshrun-hw-latency.XXXXXX")
trap 'rm -rf "$work"' EXIT
${CC:-cc} -static -O2 -Wall -Wextra -Werror "$here/hw_latency.c" -o "$work/hw_latency" \
  || { echo "hw_latency: hw_latency.c did not build"; exit 1; }

files=("$work/hw_latency" "$here/hw_latency.mesh" "$hw/scenarios/lib.sh=/test/scenarios/lib.sh")
names=()
declare -A api=()
for b in "${bins[@]}"; do
  if [ "$b" = gpiod2 ]; then
    b=$(bash "$hw/build_gpiod2.sh" --check)
    rc=$?
    [ "$rc" -eq "$SKIP" ] && { echo "SKIPPED: no libgpiod 2.x build (tests/hw/build_gpiod2.sh)"; exit "$SKIP"; }
    [ "$rc" -eq 0 ] || { echo "hw_latency: tests/hw/build_gpiod2.sh failed"; exit 1; }
  fi
  [ -x "$b" ] || { echo "hw_latency: no meshrun at $b"; exit 1; }
  v=$("$b" --version 2>&1)
  g=$(echo "$v" | grep -o 'libgpiod [0-9.]*' | tr ' ' -)
  [ -n "$g" ] || { echo "SKIPPED: $b drives no real lines ($v)"; exit "$SKIP"; }
  name=meshrun-$g
  [ -n "${api[$name]:-}" ] && name=$name-${#names[@]}
  api[$name]=${g/-/ }
  names+=("$name")
  files+=("$b=/test/$name")
done

log=$work/console.log
bash "$hw/run_vm.sh" --quiet --timeout "${MESHRUN_HW_TIMEOUT:-600}" --log "$log" \
  --env "BENCH_BINS=${names[*]}" --env "BENCH_PRESSES=$presses" --env "BENCH_WARMUP=$warmup" \
  --env "BENCH_TCP=$tcp" "$here/hw_latency_vm.sh" "${files[@]}"
rc=$?
[ "$rc" -eq "$SKIP" ] && { echo "SKIPPED: the VM harness is not ready"; exit "$SKIP"; }
[ "$rc" -eq 0 ] || { echo "hw_latency: the VM run failed (exit $rc)"; exit 1; }

# bench: NAME press n=300 p50_us=... p99_us=... min_us=... max_us=...  /  bench: tcp n=...
field() { sed -n "s/.* $1=\([0-9.]*\).*/\1/p" <<<"$2"; }
tcp_line=$(grep -a '^bench: tcp ' "$log" | tail -n 1)
tcp50=$(field p50_us "$tcp_line")
tcp99=$(field p99_us "$tcp_line")
echo
echo "GPIO edge -> remote output through two meshrun nodes, in the VM (qemu TCG, 1 CPU, gpio-sim):"
printf '%-48s %6s %10s %10s %10s %10s %12s\n' figure n "p50 (us)" "p99 (us)" "min (us)" "p50/TCP" "polled p50"
printf '%.0s-' {1..112}; echo
for name in "${names[@]}"; do
  for what in press release solo-press solo-release; do
    l=$(grep -a "^bench: $name $what " "$log" | tail -n 1)
    [ -n "$l" ] || { echo "hw_latency: no $what figures for $name"; exit 1; }
    p50=$(field p50_us "$l")
    case $what in
      solo-*) label="${what#solo-} -> output, same node (${api[$name]})" ;;
      *) label="$what -> remote output (${api[$name]})" ;;
    esac
    polled=$(grep -a "^bench: $name ${what}_polled " "$log" | tail -n 1)
    printf '%-48s %6s %10s %10s %10s %9.1fx %12s\n' "$label" "$(field n "$l")" "$p50" \
      "$(field p99_us "$l")" "$(field min_us "$l")" "$(awk -v a="$p50" -v b="$tcp50" 'BEGIN { print a / b }')" \
      "$(field p50_us "$polled")"
  done
done
printf '%-48s %6s %10s %10s %10s %10s\n' "raw TCP round trip, loopback (reference)" "$(field n "$tcp_line")" "$tcp50" "$tcp99" \
  "$(field min_us "$tcp_line")" 1.0x
echo
echo "remote: from the press (a trace marker, then gpio-sim's pull written) to the kernel setting the"
echo "  remote line (gpio_value trace event): switch's edge, its rule, a websocket frame over loopback,"
echo "  lamp's rule, the line write. One way. Same node: the same without the websocket hop."
echo "  polled p50: until a tight loop reading the line's sysfs value sees it; on the VM's one CPU the"
echo "  loop runs only when both nodes are idle again (acks and log lines done): an upper bound."
echo "reference: a whole TCP round trip between two processes, 16 bytes, TCP_NODELAY."
