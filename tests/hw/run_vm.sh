#!/usr/bin/env bash
# Boots the hardware-test VM (qemu, TCG) on a real Debian kernel with gpio-sim chips, runs a
# scenario in it as root, and exits with its result.
#
#   tests/hw/run_vm.sh [options] SCENARIO [FILE[=GUEST_PATH]...]
#
# SCENARIO  a shell script (busybox sh) run inside, in /test, after the chips exist, with the
#           helpers of tests/hw/guest/lib.sh (hw_chip, hw_press, hw_value, hw_wait_irq, ...).
# FILE      host files put into the VM, at /test/<name> unless =GUEST_PATH says where (/test is on
#           PATH). A dynamically linked binary brings the libraries ldd lists; a folder is copied whole.
#           The gpiod 1.6 tools (gpioinfo, gpioget, gpioset, gpiomon, gpiodetect, gpiofind) are
#           always there when the host has them.
# Options:
#   --chips SPEC     the gpio-sim chips, one device each: "LABEL:LINES[:NAME0,NAME1,...] ..."
#                    (default: the scenario's line "# GPIO_SIM_CHIPS=SPEC", else $GPIO_SIM_CHIPS,
#                    else "hwsim:8"); an empty name leaves a line unnamed
#   --env NAME=VALUE an environment variable for the scenario (repeatable)
#   --timeout S      the whole run, boot included (default: $MESHRUN_HW_TIMEOUT, else 60)
#   --log FILE       also save the serial console there
#   --quiet          print the console only when the scenario fails
#   --mem MB         the VM's memory (default 512)
#
# Exit: 0 the scenario passed; 1 it failed; 2 bad usage; 3 the VM gave no consistent result (timeout,
# panic); 77 the cache is not ready (run tests/hw/setup.sh first). A pass needs both the console's
# last "RESULT: PASS" and qemu's exit code from isa-debug-exit.
set -Eeuo pipefail
on_err='[ "$BASH_SUBSHELL" -eq 0 ] && echo "run_vm: ERROR: unexpected failure at line $LINENO: $BASH_COMMAND" >&2'
trap "$on_err" ERR

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
CACHE=${MESHRUN_HW_CACHE:-/var/cache/meshrun-hw}

usage() { awk 'NR > 1 && !/^#/ { exit } NR > 1 { sub(/^# ?/, ""); print }' "${BASH_SOURCE[0]}" >&2; exit 2; }

chips=
timeout=${MESHRUN_HW_TIMEOUT:-60}
log=
quiet=0
mem=512
envs=()
while [ $# -gt 0 ]; do
  case $1 in
    --chips) chips=$2; shift 2 ;;
    --env) envs+=("$2"); shift 2 ;;
    --timeout) timeout=$2; shift 2 ;;
    --log) log=$2; shift 2 ;;
    --quiet) quiet=1; shift ;;
    --mem) mem=$2; shift 2 ;;
    -h | --help) usage ;;
    --) shift; break ;;
    -*) echo "run_vm: unknown option $1" >&2; usage ;;
    *) break ;;
  esac
done
[ $# -ge 1 ] || usage
scenario=$1
shift
[ -f "$scenario" ] || { echo "run_vm: no scenario $scenario" >&2; exit 2; }
# The chips: --chips, else the scenario's own "# GPIO_SIM_CHIPS=..." line, else $GPIO_SIM_CHIPS, else one chip.
[ -n "$chips" ] || chips=$(sed -n 's/^# GPIO_SIM_CHIPS=//p' "$scenario" | head -n 1)
[ -n "$chips" ] || chips=${GPIO_SIM_CHIPS:-hwsim:8}

[ -f "$CACHE/env.sh" ] || { echo "run_vm: $CACHE/env.sh missing: run tests/hw/setup.sh first" >&2; exit 77; }
# shellcheck source=/dev/null
. "$CACHE/env.sh"
for f in "$HW_VMLINUX" "$HW_CONFIGFS_KO" "$HW_GPIO_SIM_KO" "$HW_BUSYBOX"; do
  [ -f "$f" ] || { echo "run_vm: $f missing: run tests/hw/setup.sh" >&2; exit 77; }
done
command -v qemu-system-x86_64 >/dev/null || { echo "run_vm: no qemu-system-x86_64: run tests/hw/setup.sh" >&2; exit 77; }

t0=$(date +%s.%N)
tmp=$(mktemp -d "${TMPDIR:-/tmp}/meshrun-hw-vm.XXXXXX")
trap 'rm -rf "$tmp"' EXIT
root=$tmp/root
mkdir -p "$root"/{bin,sbin,usr/bin,usr/sbin,etc,proc,sys,dev,run,tmp,root,hw,test}
chmod 1777 "$root/tmp"

# busybox and its applets.
cp "$HW_BUSYBOX" "$root/bin/busybox"
for applet in $("$HW_BUSYBOX" --list); do
  [ -e "$root/bin/$applet" ] || ln -s busybox "$root/bin/$applet"
done

# A file at its place in the VM, and the libraries it needs.
declare -A copied=() libdirs=()
put() { # HOST GUEST
  local src=$1 dst=$2 lib
  [ -n "${copied[$dst]:-}" ] && return 0
  copied[$dst]=1
  mkdir -p "$root$(dirname "$dst")"
  if [ -d "$src" ]; then
    mkdir -p "$root$dst" && cp -a "$src/." "$root$dst/"
    return 0
  fi
  cp -L "$src" "$root$dst"
  if [ -x "$src" ] && head -c 4 "$src" | grep -q 'ELF'; then
    for lib in $({ ldd "$src" 2>/dev/null || true; } | awk '/=> \// { print $3 } /^[ \t]*\/[^ ]+ \(0x/ { print $1 }'); do
      put "$lib" "$lib"
      case $(dirname "$lib") in
        /lib | /lib64 | /usr/lib | /lib/x86_64-linux-gnu | /usr/lib/x86_64-linux-gnu) ;;
        *) libdirs[$(dirname "$lib")]=1 ;; # found through LD_LIBRARY_PATH: the same inside
      esac
    done
    { ldd "$src" 2>/dev/null || true; } | awk -v f="$src" '/=> not found/ { print "run_vm: warning: " f " needs " $1 ", which ldd does not find" }' >&2
  fi
}

for tool in gpiodetect gpiofind gpioget gpioinfo gpiomon gpioset; do
  p=$(command -v "$tool" 2>/dev/null) && put "$p" "/usr/bin/$tool"
done
for arg in "$@"; do
  case $arg in
    *=/*) src=${arg%%=/*}; dst=/${arg#*=/} ;;
    *) src=$arg; dst=/test/$(basename "$arg") ;;
  esac
  [ -e "$src" ] || { echo "run_vm: no file $src" >&2; exit 2; }
  put "$src" "$dst"
done

cp "$here/guest/init.sh" "$root/init"
chmod 755 "$root/init"
cp "$here/guest/lib.sh" "$root/hw/lib.sh"
cp "$scenario" "$root/hw/scenario.sh"
cp "$HW_CONFIGFS_KO" "$root/hw/configfs.ko"
cp "$HW_GPIO_SIM_KO" "$root/hw/gpio-sim.ko"
echo "$chips" | tr ';' ' ' >"$root/hw/chips"
: >"$root/hw/env"
if [ ${#libdirs[@]} -gt 0 ]; then
  printf "export LD_LIBRARY_PATH='%s'\n" "$(IFS=:; echo "${!libdirs[*]}")" >>"$root/hw/env"
fi
for e in ${envs[@]+"${envs[@]}"}; do
  name=${e%%=*}
  value=${e#*=}
  [[ $name =~ ^[A-Za-z_][A-Za-z0-9_]*$ ]] || { echo "run_vm: bad --env $e" >&2; exit 2; }
  printf "export %s='%s'\n" "$name" "${value//\'/\'\\\'\'}" >>"$root/hw/env"
done
printf '127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n127.0.1.1\thw-vm\n' >"$root/etc/hosts"
printf 'passwd: files\ngroup: files\nhosts: files\n' >"$root/etc/nsswitch.conf"
printf 'root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\n' >"$root/etc/passwd"
printf 'root:x:0:\nnogroup:x:65534:\n' >"$root/etc/group"

(cd "$root" && find . | cpio -o -H newc --quiet) >"$tmp/initramfs.cpio"

t1=$(date +%s.%N)
console=$tmp/console.log
show() { if [ "$quiet" = 1 ]; then tee "$console" >/dev/null; else tee "$console"; fi; }
set +e
trap - ERR
timeout -k 5 "$timeout" qemu-system-x86_64 -accel tcg -M pc -cpu max -smp 1 -m "$mem" \
  -nodefaults -no-user-config -display none -monitor none -no-reboot -nic none \
  -chardev stdio,id=con,signal=off -serial chardev:con \
  -device isa-debug-exit,iobase=0xf4,iosize=0x04 \
  -kernel "$HW_VMLINUX" -initrd "$tmp/initramfs.cpio" \
  -append "console=ttyS0 rdinit=/init quiet loglevel=3 panic=-1 oops=panic" \
  </dev/null 2>&1 | sed -u 's/\r$//' | show
rc=${PIPESTATUS[0]}
set -e
trap "$on_err" ERR
t2=$(date +%s.%N)
[ -n "$log" ] && cp "$console" "$log"

last=$(grep -a '^RESULT: ' "$console" | tail -n 1 || true)
verdict=3
why=
case "$rc:$last" in
  "85:RESULT: PASS"*) verdict=0 ;;
  "43:RESULT: FAIL"*) verdict=1 ;;
  124:* | 137:*) why="timed out after ${timeout} s" ;;
  *) why="qemu exit $rc, console: '${last:-no RESULT line}'" ;;
esac
if [ "$verdict" != 0 ] && [ "$quiet" = 1 ]; then cat "$console"; fi
case $verdict in
  0) echo "run_vm: PASS: $(basename "$scenario")" ;;
  1) echo "run_vm: FAIL: $(basename "$scenario"): ${last#RESULT: }" ;;
  *) echo "run_vm: ERROR: $(basename "$scenario"): $why" ;;
esac
awk -v a="$t0" -v b="$t1" -v c="$t2" -v k="$(($(stat -c %s "$tmp/initramfs.cpio") / 1024))" \
  'BEGIN { printf "run_vm: initramfs %d KiB built in %.2f s, VM ran %.2f s\n", k, b - a, c - b }'
exit "$verdict"
