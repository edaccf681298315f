#!/usr/bin/env bash
# meshrun's set-up in one script: installs the Debian packages the build needs,
# configures and builds. Safe to run again: it installs only what is missing.
#
#   tools/dev.sh example   build, then run the example fleet (topologies/arduino.mesh)
#   tools/dev.sh test      build, then run every test under ctest
#   tools/dev.sh build     install what is missing, configure and build
#   tools/dev.sh setup     install what is missing only
#   tools/dev.sh bench     build, then run the benchmarks in bench/
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
build=${MESHRUN_BUILD_DIR:-$root/build}
# ccache keyed on paths relative to the clone: a fresh clone elsewhere (CI's) hits the cache.
export CCACHE_BASEDIR=${CCACHE_BASEDIR:-$root} CCACHE_NOHASHDIR=${CCACHE_NOHASHDIR:-true}

packages=(
  cmake ninja-build g++ pkg-config ccache            # toolchain
  tao-pegtl-dev libboost-dev libgpiod-dev libfmt-dev  # the libraries meshrun is made of
  libcli11-dev nlohmann-json3-dev
  catch2 python3 python3-websockets clang-14 libclang-rt-14-dev          # tests: Catch2, bench generator, libFuzzer
  prometheus                                         # tests: promtool and a Prometheus server (2.42)
  libssl-dev openssl ca-certificates                 # TLS: OpenSSL, the tests' certificates, the system's authorities
  etcd-server etcd-client                            # tests: a private etcd (3.4) for discovery
)

setup() {
  local missing=()
  for p in "${packages[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
  done
  [ ${#missing[@]} -eq 0 ] && return 0
  echo "meshrun: installing ${missing[*]}" >&2
  local sudo=()
  [ "$(id -u)" -ne 0 ] && sudo=(sudo)
  "${sudo[@]}" apt-get update -qq
  DEBIAN_FRONTEND=noninteractive "${sudo[@]}" apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
}

configure_and_build() {
  setup
  cmake -S "$root" -B "$build" -G Ninja -DCMAKE_BUILD_TYPE="${MESHRUN_BUILD_TYPE:-Release}" >/dev/null
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
    configure_and_build
    cd "$build"
    exec ctest --output-on-failure -j "$(nproc)" ;;
  bench)
    configure_and_build
    bash "$root/bench/check_bench.sh" "$build/tools/meshrun"
    bash "$root/bench/test_bench.sh" "$build/tools/meshrun"
    "$build/bench/ws_bench" --meshrun "$build/tools/meshrun"
    /usr/bin/python3 "$root/bench/discovery_bench.py" "$build/tools/meshrun" ;;
  *)
    sed -n '2,11p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'
    exit 2 ;;
esac
