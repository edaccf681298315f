#!/usr/bin/env bash
# run_sanitize.sh: the whole project built with AddressSanitizer and UndefinedBehaviorSanitizer
# (gcc's), and its test suite run on that build.
#
#   tests/sanitize/run_sanitize.sh SOURCE_DIR BUILD_DIR [GENERATOR]
#
# Configures SOURCE_DIR in BUILD_DIR with -DMESHRUN_SANITIZE=ON (see the top-level
# CMakeLists.txt), builds it, and runs its tests but those labelled fuzz (libFuzzer builds its own
# sanitized target), bench (timings, not correctness: the benchmarks are not even built), sanitize
# (this test), hw (the VM gets a copy of the meshrun binary, which must be static, and a sanitized
# one cannot be), package (the packages are builds of their own, not of this tree, and would be
# built again here) and dashboard (the page in a browser, with its frame rates: the dashboard's
# server is tested here by the wire tests). Exits 0 when
# every test passed and no sanitizer reported anything; 1 otherwise, with the failing tests'
# output and each report; 77 (ctest's SKIP) when this toolchain cannot build or run a sanitized
# program.
#
# Every sanitized process writes its reports to BUILD_DIR/sanitizer-reports/ (log_path) rather
# than to stderr, so that a report from a process whose exit status no test looks at (a node a
# test kills and forgets) still fails the run. Leaks are reported at exit (LeakSanitizer);
# lsan.supp beside this script lists the deliberate ones.
set -uo pipefail

if [[ $# -lt 2 ]]; then
    echo "usage: $0 SOURCE_DIR BUILD_DIR [GENERATOR]" >&2
    exit 2
fi
src=$(cd "$1" && pwd)
mkdir -p "$2"
build=$(cd "$2" && pwd)
generator=${3:-Ninja}
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
SKIP=77
jobs=$(nproc 2>/dev/null || echo 2)
# ccache keyed on paths relative to the clone, as tools/dev.sh has it: BUILD_DIR is under the
# clone (the main build's sanitize/), so a fresh clone elsewhere hits the cache.
export CCACHE_BASEDIR=${CCACHE_BASEDIR:-$src} CCACHE_NOHASHDIR=${CCACHE_NOHASHDIR:-true}
start=$(date +%s)

# Can this toolchain build and run a sanitized program at all? (libasan and libubsan come with
# Debian's g++; ASan also needs to map its shadow memory.)
probe_dir=$(mktemp -d "${TMPDIR:-/tmp}/meshrun-sanitize-probe.XXXXXX")
trap 'rm -rf "$probe_dir"' EXIT
printf 'int main() { return 0; }\n' >"$probe_dir/probe.cpp"
cxx=${CXX:-c++}
if ! out=$("$cxx" -fsanitize=address,undefined "$probe_dir/probe.cpp" -o "$probe_dir/probe" 2>&1); then
    echo "SKIPPED: $cxx cannot build with -fsanitize=address,undefined: $(echo "$out" | head -n 3)"
    exit "$SKIP"
fi
if ! out=$("$probe_dir/probe" 2>&1); then
    echo "SKIPPED: a program built with -fsanitize=address,undefined does not run here: $(echo "$out" | head -n 3)"
    exit "$SKIP"
fi

echo "sanitize: configuring and building $src in $build"
if ! cmake -S "$src" -B "$build" -G "$generator" -DCMAKE_BUILD_TYPE=Release -DMESHRUN_SANITIZE=ON \
        -DMESHRUN_BUILD_TESTS=ON -DMESHRUN_BUILD_BENCH=OFF >"$build/configure.log" 2>&1; then
    tail -n 30 "$build/configure.log"
    echo "sanitize: configuring failed (log: $build/configure.log)"
    exit 1
fi
if ! cmake --build "$build" -j "$jobs" >"$build/build.log" 2>&1; then
    grep -E -A 12 'error:|FAILED:' "$build/build.log" | head -n 80
    echo "sanitize: building failed (log: $build/build.log)"
    exit 1
fi
built=$(date +%s)

reports=$build/sanitizer-reports
rm -rf "$reports"
mkdir -p "$reports"
# halt_on_error: UBSan's checks are fatal already (-fno-sanitize-recover=undefined); this makes
# the runtime say so too. Init order: a static's constructor reading another file's static.
export ASAN_OPTIONS="log_path=$reports/asan:detect_leaks=1:check_initialization_order=1:strict_init_order=1${ASAN_OPTIONS:+:$ASAN_OPTIONS}"
export UBSAN_OPTIONS="log_path=$reports/ubsan:print_stacktrace=1:halt_on_error=1${UBSAN_OPTIONS:+:$UBSAN_OPTIONS}"
export LSAN_OPTIONS="suppressions=$here/lsan.supp:print_suppressions=0${LSAN_OPTIONS:+:$LSAN_OPTIONS}"

echo "sanitize: running the tests (ctest -LE \"fuzz|bench|sanitize|hw|package|dashboard\")"
log=$build/ctest.log
(cd "$build" && ctest --output-on-failure -j "$jobs" -LE "fuzz|bench|sanitize|hw|package|dashboard") >"$log" 2>&1
status=$?
elapsed=$(( $(date +%s) - start ))

shopt -s nullglob
found=("$reports"/*)
if [[ $status -ne 0 ]]; then
    # The failing tests' output and the summary: every line but those of tests that passed.
    grep -v -E '^ +Start +[0-9]+: |Test +#[0-9]+: .* (Passed|Skipped|Not Run)' "$log" | cut -c1-400
fi
for f in "${found[@]}"; do
    echo "---- $(basename "$f") ($(wc -l <"$f") lines; in full in $f)"
    head -n 80 "$f" | cut -c1-400
done
summary=$(grep -E '^[0-9]+% tests passed' "$log" | tail -n 1)
if [[ $status -ne 0 || ${#found[@]} -gt 0 ]]; then
    echo "sanitize: FAILED: ${summary:-ctest exited $status}; ${#found[@]} sanitizer report(s) (build $((built - start)) s, in all ${elapsed} s; log: $log)"
    exit 1
fi
echo "sanitize: ${summary}, no sanitizer report (build $((built - start)) s, in all ${elapsed} s)"
