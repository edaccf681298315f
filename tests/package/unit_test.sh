#!/usr/bin/env bash
# The installed systemd unit and sysusers.d file (docs/install.md), from `cmake --install` of a
# build into a temporary root:
#   - `systemd-analyze verify` accepts meshrun@.service, silent (it warns on stdout/stderr but
#     still exits 0, so any output fails), its man page found in the same root (Documentation=).
#     verify needs ExecStart's binary to exist: it verifies a copy of the installed unit whose
#     ExecStart names the binary in the temporary root, beside the unit itself in the root.
#     A copy with an unknown key is verified too, to show that verify's warnings are seen.
#   - systemd-sysusers, in a root of its own, makes the user meshrun (home /var/lib/meshrun, no
#     shell) in group gpio, made where missing and kept where it is there.
# Skipped (77) without systemd-analyze or systemd-sysusers (apt package systemd).
#
#   unit_test.sh CMAKE BUILD_DIR SYSTEMD_UNITDIR SYSUSERSDIR
set -uo pipefail
cmake=$1 build=$2 unitdir=$3 sysusersdir=$4

for tool in systemd-analyze systemd-sysusers; do
  command -v $tool >/dev/null || { echo "SKIPPED: no $tool (apt package systemd)"; exit 77; }
done

root=$(mktemp -d /tmp/meshrun-unit.XXXXXX)
trap 'rm -rf "$root"' EXIT
failed=0
ok() { echo "ok    $1"; }
fail() { echo "FAIL  $1"; failed=$((failed + 1)); }

DESTDIR=$root/dest "$cmake" --install "$build" --prefix /usr >/dev/null || { echo "FAIL  cmake --install"; exit 1; }
# A relative directory is under the prefix.
in_root() { case $1 in /*) echo "$root/dest$1" ;; *) echo "$root/dest/usr/$1" ;; esac; }
unit=$(in_root "$unitdir")/meshrun@.service
sysusers=$(in_root "$sysusersdir")/meshrun.conf

grep -q '^ExecStart=/usr/bin/meshrun run /etc/meshrun/fleet.mesh --node %i ' "$unit" \
  && ok "the installed unit runs /usr/bin/meshrun" || fail "the installed unit's ExecStart: $(grep ExecStart "$unit")"

mkdir "$root/copy"
sed "s|^ExecStart=/usr/bin/meshrun |ExecStart=$root/dest/usr/bin/meshrun |" "$unit" > "$root/copy/meshrun@.service"
verify() {  # the output of systemd-analyze verify of unit $1, and its status
  MANPATH=$root/dest/usr/share/man SYSTEMD_LOG_COLOR=0 systemd-analyze verify "$1" 2>&1
}
out=$(verify "$root/copy/meshrun@.service"); status=$?
if [ $status -eq 0 ] && [ -z "$out" ]; then ok "systemd-analyze verify: meshrun@.service"
else fail "systemd-analyze verify (exit $status): $out"; fi

mkdir "$root/bad"
sed 's/^Restart=on-failure/Restart=on-failure\nRestartEverySecond=yes/' "$root/copy/meshrun@.service" > "$root/bad/meshrun@.service"
out=$(verify "$root/bad/meshrun@.service")
[[ $out == *"Unknown key"*RestartEverySecond* ]] && ok "systemd-analyze verify: an unknown key seen" \
  || fail "systemd-analyze verify did not name an unknown key: $out"

# The system user, in a root of its own: gpio made.
mkdir -p "$root/sys/etc"
out=$(systemd-sysusers --root="$root/sys" "$sysusers" 2>&1) || fail "systemd-sysusers: $out"
grep -qx 'meshrun:x:[0-9]*:[0-9]*:[^:]*:/var/lib/meshrun:/usr/sbin/nologin' "$root/sys/etc/passwd" \
  && grep -qx 'gpio:x:[0-9]*:meshrun' "$root/sys/etc/group" && grep -q '^meshrun:x:' "$root/sys/etc/group" \
  && ok "systemd-sysusers: user meshrun, home /var/lib/meshrun, no shell, in a new group gpio" \
  || fail "systemd-sysusers made: $(cat "$root/sys/etc/passwd" "$root/sys/etc/group")"
# ... and a gpio group already there (Raspberry Pi OS has one) kept, meshrun added to it.
mkdir -p "$root/pi/etc"
echo 'root:x:0:0:root:/root:/bin/bash' > "$root/pi/etc/passwd"
printf 'root:x:0:\ngpio:x:997:pi\n' > "$root/pi/etc/group"
out=$(systemd-sysusers --root="$root/pi" "$sysusers" 2>&1) || fail "systemd-sysusers: $out"
grep -Eqx 'gpio:x:997:(pi,meshrun|meshrun,pi)' "$root/pi/etc/group" \
  && ok "systemd-sysusers: an existing gpio group kept, meshrun added" \
  || fail "systemd-sysusers with gpio there made: $(cat "$root/pi/etc/group")"

echo "$failed checks failed"
[ $failed -eq 0 ]
