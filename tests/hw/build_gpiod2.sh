#!/usr/bin/env bash
# Builds the meshrun binary against libgpiod 2.x, for the hardware-test VM: only the `meshrun`
# target, Release, through ccache like the main build, against the libgpiod 2.2 dev tree that
# tests/hw/setup.sh keeps in the cache, into a build folder in the cache (outside the clone, one
# per clone). Seconds when warm (nothing to do: ~0.1 s). Prints the binary's path on stdout; what
# cmake and ninja say goes to stderr.
#
#   tests/hw/build_gpiod2.sh [--check]
#
#   --check   also run `meshrun --version` and fail unless it names libgpiod 2.x
#
# Environment: MESHRUN_HW_CACHE (default /var/cache/meshrun-hw); MESHRUN_HW_GPIOD2_BUILD, the build
# folder (default $MESHRUN_HW_CACHE/build-gpiod2/<clone>-<hash of its path>).
# Exit: 0 built; 1 the build failed; 77 no libgpiod 2.x in the cache (run tests/hw/setup.sh),
# or no cmake/ninja.
set -uo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
root=$(cd "$here/../.." && pwd)
CACHE=${MESHRUN_HW_CACHE:-/var/cache/meshrun-hw}
check=0
case ${1:-} in
  --check) check=1 ;;
  '') ;;
  *) sed -n '2,15p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//' >&2; exit 2 ;;
esac

gpiod2=$CACHE/libgpiod2
if [ ! -f "$gpiod2/include/gpiod.h" ] || [ ! -f "$gpiod2/lib/libgpiod.a" ]; then
  echo "SKIPPED: no libgpiod 2.x dev tree at $gpiod2 (run tests/hw/setup.sh)" >&2
  exit 77
fi
for tool in cmake ninja; do
  command -v "$tool" >/dev/null || { echo "SKIPPED: no $tool (tools/dev.sh setup installs it)" >&2; exit 77; }
done

# One build folder per clone: a CMake build folder belongs to one source tree.
key=$(basename "$root")-$(printf '%s' "$root" | md5sum | cut -c1-8)
build=${MESHRUN_HW_GPIOD2_BUILD:-$CACHE/build-gpiod2/$key}
mkdir -p "$build" || { echo "build_gpiod2: cannot create $build" >&2; exit 77; }

# Two tests may ask at once (ctest -j): one builds, the other waits and finds it done.
exec 9>"$build.lock"
flock 9

t0=$(date +%s.%N)
configured=$(sed -n 's/^MESHRUN_LIBGPIOD_ROOT:PATH=//p' "$build/CMakeCache.txt" 2>/dev/null)
if [ "$configured" != "$gpiod2" ] || [ ! -f "$build/build.ninja" ]; then
  nice cmake -S "$root" -B "$build" -G Ninja -DCMAKE_BUILD_TYPE=Release -DMESHRUN_BUILD_TESTS=OFF \
    -DMESHRUN_LIBGPIOD_ROOT="$gpiod2" >&2 || { echo "build_gpiod2: cmake failed" >&2; exit 1; }
fi
nice cmake --build "$build" --target meshrun >&2 || { echo "build_gpiod2: the build failed" >&2; exit 1; }
bin=$build/tools/meshrun
[ -x "$bin" ] || { echo "build_gpiod2: no $bin after the build" >&2; exit 1; }
version=$("$bin" --version 2>&1)
awk -v a="$t0" -v b="$(date +%s.%N)" -v v="$version" 'BEGIN { printf "build_gpiod2: %s, in %.1f s\n", v, b - a }' >&2
if [ "$check" = 1 ]; then
  case $version in
    *"libgpiod 2."*) ;;
    *) echo "build_gpiod2: $bin says '$version', not libgpiod 2.x" >&2; exit 1 ;;
  esac
fi
echo "$bin"
