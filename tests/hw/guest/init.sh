#!/bin/sh
# /init of the hardware-test VM (busybox): mounts, modules, the gpio-sim chips of /hw/chips, the
# scenario, then "RESULT: PASS|FAIL" on the console and the same result through isa-debug-exit.
export PATH=/test:/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin
export HOME=/root
umask 022

result() { # $1: PASS or FAIL, $2: detail
  echo "RESULT: $1${2:+ ($2)}"
  # isa-debug-exit on port 0xf4: qemu exits with (byte << 1) | 1: 0x2a -> 85 pass, 0x15 -> 43 fail.
  if [ "$1" = PASS ]; then b='\052'; else b='\025'; fi
  printf "$b" | dd of=/dev/port bs=1 seek=244 count=1 conv=notrunc 2>/dev/null
  poweroff -f
  while :; do sleep 60; done
}

mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
mkdir -p /dev/pts /dev/shm /run /tmp
mount -t devpts devpts /dev/pts
mount -t tmpfs tmpfs /dev/shm
mount -t tmpfs tmpfs /run
mount -t debugfs debugfs /sys/kernel/debug
ip link set lo up
hostname hw-vm

insmod /hw/configfs.ko || result FAIL "insmod configfs.ko failed"
mount -t configfs configfs /sys/kernel/config
insmod /hw/gpio-sim.ko || result FAIL "insmod gpio-sim.ko failed"

. /hw/lib.sh
: >"$HW_FAILURES"
HW_CHIPS=
for spec in $(cat /hw/chips); do
  label=${spec%%:*}
  rest=${spec#*:}
  lines=${rest%%:*}
  names=
  [ "$rest" != "$lines" ] && names=${rest#*:}
  hw_make_chip "$label" "$lines" "$names" || result FAIL "cannot create gpio-sim chip $spec"
  HW_CHIPS="$HW_CHIPS${HW_CHIPS:+ }$label"
  echo "hw: chip $label: $(hw_chip "$label") ($(hw_dev "$label")), $lines lines${names:+: $names}"
done
export HW_CHIPS

[ -f /hw/env ] && . /hw/env
cd /test || result FAIL "no /test"
sh -c '. /hw/lib.sh; . /hw/scenario.sh'
rc=$?
failed=$(wc -l <"$HW_FAILURES")
if [ "$rc" -eq 0 ] && [ "$failed" -eq 0 ]; then
  result PASS
fi
echo "--- dmesg, last 25 lines ---"
dmesg | tail -n 25
result FAIL "scenario exit $rc, $failed failed checks"
