#!/usr/bin/env bash
# meshrun's set-up in one script: installs the Debian packages the build needs,
# configures and builds. Safe to run again: it installs only what is missing.
#
#   tools/dev.sh example   build, then run the example fleet (topologies/arduino.mesh)
#   tools/dev.sh test      build, then run every test under ctest
#   tools/dev.sh build     install what is missing, configure and build
#   tools/dev.sh setup     install what is missing only
#   tools/dev.sh bench     build, then run the benchmarks in bench/
#   tools/dev.sh package [ARCH...]
#                          install the cross toolchains, then build the Debian packages
#                          (amd64 arm64 armhf by default) into build/packages/
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
build=${MESHRUN_BUILD_DIR:-$root/build}
# ccache keyed on paths relative to the clone: a fresh clone elsewhere (CI's) hits the cache.
export CCACHE_BASEDIR=${CCACHE_BASEDIR:-$root} CCACHE_NOHASHDIR=${CCACHE_NOHASHDIR:-true}

packages=(
  cmake ninja-build g++ pkg-config ccache dpkg-dev   # toolchain (dpkg-dev: Debian's build flags)
  tao-pegtl-dev libboost-dev libgpiod-dev libfmt-dev  # the libraries meshrun is made of
  libcli11-dev nlohmann-json3-dev libsystemd-dev     # libsystemd: sd_notify in a dynamic build
  catch2 python3 python3-websockets clang-14 libclang-rt-14-dev          # tests: Catch2, bench generator, libFuzzer
  prometheus                                         # tests: promtool and a Prometheus server (2.42)
  libssl-dev openssl ca-certificates                 # TLS: OpenSSL, the tests' certificates, the system's authorities
  etcd-server etcd-client                            # tests: a private etcd (3.4) for discovery
  systemd man-db groff-base mandoc                   # tests: the unit, sysusers, the man page
  chromium fonts-dejavu-core                         # tests: the dashboard in a browser (headless, DevTools)
)
package_arches=(amd64 arm64 armhf)
# The packages: CPack's dpkg tools, lintian, qemu-user-static to run arm binaries, debootstrap for
# a fresh Debian root to install into; per architecture, its cross toolchain and the libraries
# meshrun links, from Debian's multiarch archive.
package_tools=(file lintian qemu-user-static debootstrap)
packaging_packages() {
  local arch
  echo "${package_tools[@]}"
  for arch in "$@"; do
    [ "$arch" = "$(dpkg --print-architecture)" ] || echo "crossbuild-essential-$arch"
    for p in libgpiod-dev libssl-dev libsystemd-dev libfmt-dev; do echo "$p:$arch"; done
  done
}

# Installs what is missing of the packages named (all the build's and the tests' by default).
setup() {
  local missing=() wanted=("$@")
  [ ${#wanted[@]} -gt 0 ] || wanted=("${packages[@]}")
  for p in "${wanted[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
  done
  [ ${#missing[@]} -eq 0 ] && return 0
  echo "meshrun: installing ${missing[*]}" >&2
  local sudo=()
  [ "$(id -u)" -ne 0 ] && sudo=(sudo)
  local arch
  for p in "${missing[@]}"; do
    arch=${p#*:}
    if [ "$arch" != "$p" ] && ! dpkg --print-foreign-architectures | grep -qx "$arch"; then
      "${sudo[@]}" dpkg --add-architecture "$arch"
    fi
  done
  "${sudo[@]}" apt-get update -qq
  DEBIAN_FRONTEND=noninteractive "${sudo[@]}" apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
}

# Debian's compiler and linker flags for architecture $1 into CXXFLAGS and LDFLAGS (which CMake
# reads when it first configures a build): dpkg-buildflags with every hardening feature, without
# -g and -O2 (the build type's -O3 instead), without the path maps (they name the directory it is
# called from). The tests' build and the packages' are built alike: the amd64 package's objects
# are the tests' own, from ccache.
export_debian_flags() {
  local -x DEB_HOST_ARCH=$1 DEB_BUILD_MAINT_OPTIONS="hardening=+all reproducible=-fixfilepath,-fixdebugpath" DEB_CXXFLAGS_MAINT_STRIP="-g -O2"
  CXXFLAGS="$(dpkg-buildflags --get CPPFLAGS) $(dpkg-buildflags --get CXXFLAGS)"
  LDFLAGS=$(dpkg-buildflags --get LDFLAGS)
  export CXXFLAGS LDFLAGS
}

# Builds meshrun's Debian package for each architecture named into $build/packages/: a build of the
# binary alone, linked dynamically, in $build-ARCH (beside $build, so that ccache finds the same
# relative paths); cross-compiled for a foreign architecture.
build_packages() {
  local arch dir flags=() out=$build/packages
  mkdir -p "$out"
  for arch in "$@"; do
    dir=$build-$arch
    flags=()
    if [ "$arch" != "$(dpkg --print-architecture)" ]; then
      flags=(-DCMAKE_TOOLCHAIN_FILE="$root/cmake/toolchains/$(dpkg-architecture -a"$arch" -qDEB_HOST_MULTIARCH 2>/dev/null).cmake")
    fi
    echo "meshrun: building the $arch package" >&2
    (
      export_debian_flags "$arch"
      cmake -S "$root" -B "$dir" -G Ninja -DCMAKE_BUILD_TYPE=Release -DMESHRUN_STATIC_BINARY=OFF -DMESHRUN_DEBIAN_PACKAGE=ON \
            -DMESHRUN_BUILD_TESTS=OFF -DMESHRUN_BUILD_BENCH=OFF "${flags[@]}" >/dev/null
      cmake --build "$dir"
      cd "$dir" && cpack -G DEB -B "$out" >/dev/null
    )
    rm -rf "$out/_CPack_Packages"
  done
  ls -l "$out"/*.deb
}

configure_and_build() {
  setup
  (
    export_debian_flags "$(dpkg --print-architecture)"
    cmake -S "$root" -B "$build" -G Ninja -DCMAKE_BUILD_TYPE="${MESHRUN_BUILD_TYPE:-Release}" >/dev/null
  )
  cmake --build "$build"
}

case "${1:-}" in
  setup) setup ;;
  build) configure_and_build ;;
  example)
    configure_and_build
    "$build/tools/meshrun" check "$root/topologies/arduino.mesh"
    exec "$build/tools/meshrun" up "$root/topologies/arduino.mesh" ;;
  test)
    # The tests of label `package` build and run the packages of every architecture.
    setup "${packages[@]}" $(packaging_packages "${package_arches[@]}")
    configure_and_build
    cd "$build"
    exec ctest --output-on-failure -j "$(nproc)" ;;
  package)
    shift
    [ $# -gt 0 ] || set -- "${package_arches[@]}"
    setup "${packages[@]}" $(packaging_packages "$@")
    build_packages "$@" ;;
  bench)
    configure_and_build
    bash "$root/bench/check_bench.sh" "$build/tools/meshrun"
    bash "$root/bench/test_bench.sh" "$build/tools/meshrun"
    "$build/bench/ws_bench" --meshrun "$build/tools/meshrun"
    /usr/bin/python3 "$root/bench/discovery_bench.py" "$build/tools/meshrun" ;;
  *)
    sed -n '2,13p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'
    exit 2 ;;
esac
