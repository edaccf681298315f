#!/usr/bin/env bash
# Prepares what the hardware tests need to boot a small VM with a real kernel GPIO chip (gpio-sim),
# and caches it outside the clone, in ${MESHRUN_HW_CACHE:-/var/cache/meshrun-hw}:
#
#   - Debian packages: qemu-system-x86, cpio, kmod, gpiod (libgpiod 1.6 tools), gcc, make, xz-utils
#     and the linux-headers of the kernel ABI in use (installed with apt-get when missing, as root);
#   - kernel/<abi>/: vmlinux (uncompressed, boots fast), configfs.ko, gpio-sim.ko built out of tree
#     from three files of Debian's linux-source (Debian's 6.1 kernels lack CONFIG_GPIO_SIM);
#   - busybox/busybox: a static busybox (downloaded, not installed: busybox-static conflicts with busybox);
#   - libgpiod2/{include,lib}: libgpiod 2.x headers and static libraries from Debian 13 (trixie),
#     downloaded with a private apt state that leaves the system's apt alone;
#   - env.sh: the paths of all of the above, sourced by run_vm.sh.
#
# Idempotent: when everything is there it takes well under a second.
# Exit codes: 0 ready; 77 something could not be had (a package unreachable, not root): the tests
# SKIP with the one-line reason printed last ("hw setup: SKIP: ..."); 1 a real error (a build failed).
#
# Environment: MESHRUN_HW_CACHE (cache folder), MESHRUN_HW_KABI (pin a kernel ABI, e.g. 6.1.0-57-amd64),
# MESHRUN_HW_DEBIAN_MIRROR (the Debian mirror used for trixie's libgpiod; default: the system's).
set -Eeuo pipefail
trap '[ "$BASH_SUBSHELL" -eq 0 ] && echo "hw setup: ERROR: unexpected failure at line $LINENO: $BASH_COMMAND"' ERR

CACHE=${MESHRUN_HW_CACHE:-/var/cache/meshrun-hw}
SKIP=77

say() { echo "hw setup: $*"; }
# Something cannot be had: SKIP, unless a complete cache from before can serve (offline, say).
skip() {
  if [ "${prev_ok:-0}" = 1 ]; then
    echo "hw setup: cannot update the cache ($*): using it as it was: $CACHE/env.sh"
    exit 0
  fi
  echo "hw setup: SKIP: $*"
  exit "$SKIP"
}
die() { echo "hw setup: ERROR: $*"; exit 1; }

mkdir -p "$CACHE" 2>/dev/null || skip "cannot create the cache folder $CACHE (set MESHRUN_HW_CACHE)"
[ -w "$CACHE" ] || skip "cannot write to the cache folder $CACHE (set MESHRUN_HW_CACHE)"
CACHE=$(cd "$CACHE" && pwd)
mkdir -p "$CACHE/logs"
LOG=$CACHE/logs/setup.log

# One set-up at a time (ctest -j, several clones sharing the cache).
exec 9>"$CACHE/.lock"
flock -w 1800 9 || skip "the cache $CACHE stayed locked for 30 minutes"
: >"$LOG"

# A complete cache from an earlier run, still usable if this one cannot get something new.
prev_ok=0
if [ -f "$CACHE/env.sh" ] && command -v qemu-system-x86_64 >/dev/null &&
  (. "$CACHE/env.sh" && for f in "$HW_VMLINUX" "$HW_CONFIGFS_KO" "$HW_GPIO_SIM_KO" "$HW_BUSYBOX" \
    "$HW_LIBGPIOD2_LIB/libgpiod.a"; do [ -f "$f" ] || exit 1; done); then
  prev_ok=1
fi

tmp=$(mktemp -d "${TMPDIR:-/tmp}/meshrun-hw-setup.XXXXXX")
trap 'rm -rf "$tmp"' EXIT

# Runs a command quietly, its output kept in the log; prints the log's tail on failure.
quiet() {
  echo "+ $*" >>"$LOG"
  if ! "$@" >>"$LOG" 2>&1; then
    tail -n 15 "$LOG" | sed 's/^/hw setup:   | /' >&2
    return 1
  fi
}

# The first error apt wrote to the log for the last command, for a skip's one-line reason.
apt_error() { awk '/^\+ / { e = "" } /^E: / && e == "" { e = substr($0, 4) } END { if (e != "") print ": " e }' "$LOG"; }

apt_updated=0
apt_update() {
  [ "$apt_updated" = 1 ] && return 0
  [ "$(id -u)" -eq 0 ] || return 1
  say "apt-get update"
  quiet apt-get update -qq || return 1
  apt_updated=1
}

# --- 1. Debian packages -------------------------------------------------------------------------
installed() { dpkg-query -W -f='${Status}\n' "$@" 2>/dev/null | grep -c "install ok installed" || true; }
need_packages() {
  local missing=() p
  for p in "$@"; do
    [ "$(installed "$p")" = 1 ] || missing+=("$p")
  done
  [ ${#missing[@]} -eq 0 ] && return 0
  [ "$(id -u)" -eq 0 ] || skip "missing packages ${missing[*]} and not root to install them"
  apt_update || skip "apt-get update failed$(apt_error)"
  say "installing ${missing[*]}"
  DEBIAN_FRONTEND=noninteractive quiet apt-get install -y -qq --no-install-recommends "${missing[@]}" \
    || skip "cannot install ${missing[*]}$(apt_error)"
}

packages=(qemu-system-x86 cpio kmod gpiod gcc libc6-dev make xz-utils)
need_packages "${packages[@]}"
say "packages: ${packages[*]}: ok"

# --- 2. The kernel ABI: that of the linux-headers that can be installed ---------------------------
kabi=${MESHRUN_HW_KABI:-}
headers_candidate() {
  apt-cache depends linux-headers-amd64 2>/dev/null | sed -n 's/^ *Depends: linux-headers-\(.*-amd64\)$/\1/p' | head -n 1
}
if [ -z "$kabi" ]; then
  kabi=$(headers_candidate)
  if [ -z "$kabi" ] && apt_update; then kabi=$(headers_candidate); fi
  if [ -z "$kabi" ]; then # no apt lists: the newest headers already installed
    kabi=$(dpkg-query -W -f='${Package} ${Status}\n' 'linux-headers-*-amd64' 2>/dev/null \
      | awk '/install ok installed/ {print $1}' | sed 's/^linux-headers-//' | grep -v -e '-cloud-' -e '-rt-' | sort -V | tail -n 1 || true)
  fi
  [ -n "$kabi" ] || skip "no linux-headers-amd64 known to apt (no package lists, registry unreachable?)"
fi
need_packages "linux-headers-$kabi"
kver=$(dpkg-query -W -f='${Version}' "linux-headers-$kabi")
kseries=$(echo "$kabi" | cut -d. -f1-2)  # 6.1
headers=/usr/src/linux-headers-$kabi
[ -f "$headers/Makefile" ] || die "$headers has no Makefile"
say "kernel ABI $kabi (linux-headers $kver)"

kdir=$CACHE/kernel/$kabi
mkdir -p "$kdir"

# apt-get download PACKAGE[=VERSION] into $tmp, prints the .deb's path.
download() {
  local what=$1 deb
  (cd "$tmp" && quiet apt-get -o APT::Sandbox::User=root download -qq "$what") || return 1
  deb=$(ls -t "$tmp"/"${what%%=*}"_*.deb 2>/dev/null | head -n 1)
  [ -n "$deb" ] || return 1
  echo "$deb"
}

# --- 3. Three files of the kernel's own source, and extract-vmlinux -----------------------------
src=$CACHE/src/$kver
srcfiles=(drivers/gpio/gpio-sim.c drivers/gpio/gpiolib.h kernel/irq/irq_sim.c scripts/extract-vmlinux)
if [ ! -f "$src/.complete" ]; then
  apt_update || true
  say "linux-source-$kseries $kver: downloading (~140 MB, once)"
  deb=$(download "linux-source-$kseries=$kver") || {
    say "linux-source-$kseries $kver not available, trying the candidate"
    deb=$(download "linux-source-$kseries") || skip "cannot download linux-source-$kseries$(apt_error)"
  }
  say "linux-source: extracting ${srcfiles[*]}"
  rm -rf "$src" && mkdir -p "$src.part"
  members=()
  for f in "${srcfiles[@]}"; do members+=("linux-source-$kseries/$f"); done
  dpkg-deb --fsys-tarfile "$deb" | tar -xO "./usr/src/linux-source-$kseries.tar.xz" \
    | nice xz -dc | tar -x -C "$src.part" --strip-components=1 "${members[@]}" \
    || die "cannot extract ${srcfiles[*]} from $deb"
  rm -f "$deb"
  touch "$src.part/.complete" && mv "$src.part" "$src"
fi
say "kernel sources (gpio-sim, irq_sim) $kver: ok"

# --- 4. The kernel: vmlinux and configfs.ko -----------------------------------------------------
if [ ! -f "$kdir/vmlinux" ] || [ ! -f "$kdir/configfs.ko" ]; then
  apt_update || true
  say "linux-image-$kabi: downloading (~70 MB)"
  deb=$(download "linux-image-$kabi-unsigned=$kver") || deb=$(download "linux-image-$kabi=$kver") \
    || skip "cannot download linux-image-$kabi $kver$(apt_error)"
  mkdir -p "$tmp/image"
  dpkg-deb --fsys-tarfile "$deb" | tar -x -C "$tmp/image" --wildcards "./boot/vmlinuz-$kabi" \
    "./lib/modules/$kabi/kernel/fs/configfs/configfs.ko*" || die "unexpected content in $deb"
  ko=$(ls "$tmp/image/lib/modules/$kabi/kernel/fs/configfs/"configfs.ko*)
  case $ko in
    *.xz) xz -dc "$ko" >"$kdir/configfs.ko.part" ;;
    *.zst) zstd -qdc "$ko" >"$kdir/configfs.ko.part" ;;
    *.gz) gzip -dc "$ko" >"$kdir/configfs.ko.part" ;;
    *) cp "$ko" "$kdir/configfs.ko.part" ;;
  esac
  say "linux-image: extracting vmlinux from vmlinuz"
  sh "$src/scripts/extract-vmlinux" "$tmp/image/boot/vmlinuz-$kabi" >"$kdir/vmlinux.part" \
    || die "extract-vmlinux failed on vmlinuz-$kabi"
  rm -f "$deb"
  mv "$kdir/configfs.ko.part" "$kdir/configfs.ko"
  mv "$kdir/vmlinux.part" "$kdir/vmlinux"
fi
say "kernel $kabi: vmlinux, configfs.ko: ok"

# --- 5. gpio-sim.ko, out of tree ----------------------------------------------------------------
# A module cannot share its name with one of its objects: gpio-sim.ko is made of gpio-sim-core.o
# (drivers/gpio/gpio-sim.c) and irq_sim.o. irq_to_desc is not exported to modules, so irq_sim's
# handle_simple_irq(irq_to_desc(irq)) becomes generic_handle_irq(irq).
if [ ! -f "$kdir/gpio-sim.ko" ] || [ "$kdir/gpio-sim.ko" -ot "$src/.complete" ]; then
  say "gpio-sim.ko: building against $headers"
  b=$kdir/gpio-sim-build
  rm -rf "$b" && mkdir -p "$b"
  cp "$src/drivers/gpio/gpio-sim.c" "$b/gpio-sim-core.c"
  cp "$src/drivers/gpio/gpiolib.h" "$src/kernel/irq/irq_sim.c" "$b/"
  sed -i 's/handle_simple_irq(irq_to_desc(\([a-z_]*\)))/generic_handle_irq(\1)/' "$b/irq_sim.c"
  grep -q 'irq_to_desc' "$b/irq_sim.c" && die "irq_sim.c: irq_to_desc still used after the patch"
  printf 'obj-m := gpio-sim.o\ngpio-sim-y := gpio-sim-core.o irq_sim.o\n' >"$b/Kbuild"
  quiet nice make -C "$headers" M="$b" modules || die "gpio-sim.ko did not build (see $LOG)"
  want=$(modinfo -F vermagic "$kdir/configfs.ko")
  got=$(modinfo -F vermagic "$b/gpio-sim.ko")
  [ "$want" = "$got" ] || die "gpio-sim.ko vermagic '$got' differs from the kernel's '$want'"
  strip --strip-debug -o "$kdir/gpio-sim.ko.part" "$b/gpio-sim.ko"
  mv "$kdir/gpio-sim.ko.part" "$kdir/gpio-sim.ko"
  rm -rf "$b"
fi
say "gpio-sim.ko for $kabi: ok"

# --- 6. busybox (static) ------------------------------------------------------------------------
if [ ! -x "$CACHE/busybox/busybox" ]; then
  apt_update || true
  say "busybox-static: downloading"
  deb=$(download busybox-static) || skip "cannot download busybox-static$(apt_error)"
  mkdir -p "$tmp/bb" "$CACHE/busybox"
  dpkg-deb --fsys-tarfile "$deb" | tar -x -C "$tmp/bb" ./bin/busybox || die "no busybox in $deb"
  cp "$tmp/bb/bin/busybox" "$CACHE/busybox/busybox.part"
  mv "$CACHE/busybox/busybox.part" "$CACHE/busybox/busybox"
fi
say "busybox: ok"

# --- 7. libgpiod 2.x from Debian 13 (trixie), with a private apt state --------------------------
debian_mirror() {
  # The URI that serves the system's main suite (not -security, not -updates), deb822 or one-line.
  local f
  for f in /etc/apt/sources.list.d/*.sources; do
    [ -f "$f" ] || continue
    awk 'BEGIN{RS=""} /(^|\n)Suites:[^\n]*bookworm([ \n]|$)/ {
           if (match($0, /(^|\n)URIs:[ \t]*[^ \t\n]+/)) { s=substr($0,RSTART,RLENGTH); sub(/.*URIs:[ \t]*/,"",s); print s } }' "$f"
  done
  for f in /etc/apt/sources.list /etc/apt/sources.list.d/*.list; do
    [ -f "$f" ] || continue
    awk '$1=="deb" { i=2; if ($2 ~ /^\[/) { while ($i !~ /\]$/) i++; i++ } if ($(i+1)=="bookworm") print $i }' "$f"
  done
  true
}
lg=$CACHE/libgpiod2
if [ ! -f "$lg/lib/libgpiod.a" ] || ! grep -q gpiod_chip_request_lines "$lg/include/gpiod.h" 2>/dev/null; then
  mirror=${MESHRUN_HW_DEBIAN_MIRROR:-$(debian_mirror | grep -v -e security | head -n 1)}
  mirror=${mirror:-http://deb.debian.org/debian}
  keyring=/usr/share/keyrings/debian-archive-keyring.gpg
  say "libgpiod 2.x: apt-get update of trixie from $mirror (private apt state in $CACHE/apt-trixie)"
  a=$CACHE/apt-trixie
  mkdir -p "$a/lists/partial" "$a/cache/archives/partial" "$a/parts"
  : >"$a/status"
  echo "deb [signed-by=$keyring] $mirror trixie main" >"$a/sources.list"
  aptopts=(-o "Dir::Etc::SourceList=$a/sources.list" -o "Dir::Etc::SourceParts=$a/parts"
    -o "Dir::Etc::PreferencesParts=$a/parts" -o "Dir::Etc::Preferences=$a/preferences"
    -o "Dir::State::Lists=$a/lists" -o "Dir::State::status=$a/status" -o "Dir::Cache=$a/cache"
    -o "Acquire::Languages=none" -o "APT::Sandbox::User=root")
  quiet apt-get "${aptopts[@]}" update -qq || skip "apt-get update of Debian trixie for libgpiod 2.x failed$(apt_error)"
  lgpkgs=(libgpiod-dev)
  # The C++ bindings, where trixie ships them in a package of their own.
  for p in libgpiodcxx-dev; do
    apt-cache "${aptopts[@]}" show "$p" >/dev/null 2>&1 && lgpkgs+=("$p")
  done
  say "libgpiod 2.x: downloading ${lgpkgs[*]}"
  (cd "$tmp" && quiet apt-get "${aptopts[@]}" download -qq "${lgpkgs[@]}") \
    || skip "cannot download ${lgpkgs[*]} from trixie$(apt_error)"
  mkdir -p "$tmp/lg"
  for deb in "$tmp"/*.deb; do dpkg-deb -x "$deb" "$tmp/lg"; done
  ver=$(dpkg-deb -f "$(ls "$tmp"/libgpiod-dev_*.deb)" Version)
  multiarch=$(gcc -print-multiarch)
  rm -rf "$lg.part" && mkdir -p "$lg.part/lib"
  cp -a "$tmp/lg/usr/include" "$lg.part/include"
  cp -a "$tmp/lg/usr/lib/$multiarch/"*.a "$lg.part/lib/"
  if [ -d "$tmp/lg/usr/lib/$multiarch/pkgconfig" ]; then
    cp -a "$tmp/lg/usr/lib/$multiarch/pkgconfig" "$lg.part/lib/"
    sed -i -e "s|^prefix=.*|prefix=$lg|" -e "s|^libdir=.*|libdir=\${prefix}/lib|" \
      -e "s|^includedir=.*|includedir=\${prefix}/include|" "$lg.part/lib/pkgconfig/"*.pc
  fi
  echo "$ver" >"$lg.part/VERSION"
  rm -rf "$lg" && mv "$lg.part" "$lg"
  rm -rf "$a" # 20 MB of trixie's package lists, needed again only if libgpiod2/ goes
fi
lgver=$(cat "$lg/VERSION" 2>/dev/null || sed -n 's/^Version: *//p' "$lg/lib/pkgconfig/libgpiod.pc" 2>/dev/null || true)
say "libgpiod ${lgver:-2.x}: $lg/include, $lg/lib: ok"

# Older kernels and sources (a changed ABI) go: 70 MB each.
for d in "$CACHE"/kernel/* "$CACHE"/src/*; do
  case $d in "$kdir" | "$src") ;; *) [ -d "$d" ] && say "removing the old $d" && rm -rf "$d" ;; esac
done

# --- The paths, for run_vm.sh and whoever builds against them -----------------------------------
cat >"$CACHE/env.sh.part" <<EOF
# Written by tests/hw/setup.sh: the paths of the hardware-test cache.
HW_CACHE='$CACHE'
HW_KABI='$kabi'
HW_VMLINUX='$kdir/vmlinux'
HW_CONFIGFS_KO='$kdir/configfs.ko'
HW_GPIO_SIM_KO='$kdir/gpio-sim.ko'
HW_BUSYBOX='$CACHE/busybox/busybox'
HW_LIBGPIOD2_INCLUDE='$lg/include'
HW_LIBGPIOD2_LIB='$lg/lib'
EOF
mv "$CACHE/env.sh.part" "$CACHE/env.sh"
say "ready: $CACHE/env.sh"
