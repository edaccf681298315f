#!/usr/bin/env bash
# run_fuzz_wire.sh: build the libFuzzer target over the frame and message path and fuzz it for a while.
#
#   tests/fuzz/run_fuzz_wire.sh BUILD_DIR [LIBFUZZER_FLAG...]
#
# Builds BUILD_DIR/fuzz_wire with clang++ (CXX, default clang++) from tests/fuzz/fuzz_wire.cpp,
# which includes engine/src/message_counter.hpp and engine/src/wire.hpp (plain C++, no Boost),
# under ASan, UBSan and libFuzzer. Seeds from tests/fuzz/wire-seeds/ (tests/fuzz/wire_seeds.py
# writes them), then fuzzes for FUZZ_SECONDS seconds (20). New inputs accumulate in
# BUILD_DIR/fuzz-wire-corpus (FUZZ_CORPUS to put them elsewhere); a crashing, leaking or hanging
# input is saved in BUILD_DIR/fuzz-wire-artifacts/ and the script exits non-zero. On success it
# prints `fuzz: N executions in S s (R/s), no crash`. Extra arguments go to libFuzzer (say
# -runs=N, or an artifact's path alone to run it again).
set -euo pipefail

if [[ $# -lt 1 || "$1" == -* ]]; then
    echo "usage: $0 BUILD_DIR [LIBFUZZER_FLAG...]" >&2
    exit 2
fi

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
mkdir -p "$1"
build="$(cd "$1" && pwd)"
shift
cxx="${CXX:-clang++}"
seconds="${FUZZ_SECONDS:-20}"
flags=(-std=c++20 -O1 -g -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=undefined)

# Skipped (ctest's SKIP, 77) where there is no clang or no libFuzzer (Debian's clang-14 and
# libclang-rt-14-dev, which tools/dev.sh installs).
probe_dir="$(mktemp -d "${TMPDIR:-/tmp}/meshrun-fuzz-probe.XXXXXX")"
trap 'rm -rf "$probe_dir"' EXIT
printf 'extern "C" int LLVMFuzzerTestOneInput(const char*, unsigned long) { return 0; }\n' >"$probe_dir/probe.cpp"
if ! command -v "$cxx" >/dev/null; then
    echo "SKIPPED: no $cxx (CXX) to build the fuzzer with"
    exit 77
fi
if ! out="$("$cxx" "${flags[@]}" "$probe_dir/probe.cpp" -o "$probe_dir/probe" 2>&1)"; then
    echo "SKIPPED: $cxx cannot build a libFuzzer target: $(echo "$out" | head -n 2)"
    exit 77
fi

# One translation unit: rebuilt when it or either header is newer than the binary.
target="$build/fuzz_wire"
sources=("$root/tests/fuzz/fuzz_wire.cpp" "$root/engine/src/message_counter.hpp" "$root/engine/src/wire.hpp")
stale=0
[[ -x "$target" ]] || stale=1
for f in "${sources[@]}"; do [[ "$target" -nt "$f" ]] || stale=1; done
if [[ $stale -eq 1 ]]; then
    rm -f "$target"
    "$cxx" "${flags[@]}" -I"$root/engine/src" "$root/tests/fuzz/fuzz_wire.cpp" -o "$target" ||
        { echo "run_fuzz_wire: compiling failed" >&2; exit 2; }
fi

corpus="${FUZZ_CORPUS:-$build/fuzz-wire-corpus}"
seeds="$root/tests/fuzz/wire-seeds"
artifacts="$build/fuzz-wire-artifacts"
mkdir -p "$corpus" "$artifacts"
n=$(find "$seeds" -type f | wc -l)

# Websocket heads and meshrun.1's words help the mutator.
dict="$build/wire.dict"
printf '"%s"\n' '\x81' '\x01' '\x80' '\x00' '\x88' '\x89' '\x8A' '\x82' '\x7E' '\x7F' '\xFE' '\xFF' \
    '\x11\x22\x33\x44' 'm ' 'r ' 'a ' ' ' '0' '1' '9999999999999999999' '10000000000000000000' \
    '18446744073709551615' >"$dict"

# -max_len=1024: a few frames of each length encoding, with room for the selectors.
log="$build/fuzz-wire.log"
echo "run_fuzz_wire: fuzzing for ${seconds} s with $n seeds${*:+ and flags $*} (log: $log)"
start=$(date +%s)
status=0
ASAN_OPTIONS="quarantine_size_mb=64${ASAN_OPTIONS:+:$ASAN_OPTIONS}" \
    "$target" "$corpus" "$seeds" -dict="$dict" \
    -max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 -max_len=1024 \
    -print_final_stats=1 -artifact_prefix="$artifacts/" "$@" >"$log" 2>&1 || status=$?
elapsed=$(( $(date +%s) - start ))

if [[ $status -ne 0 ]]; then
    # The first report in full (up to 60 lines), then every summary line.
    sed -n '/ERROR: \|==[0-9]*==WARNING\|runtime error:\|fuzz_wire: /,$p' "$log" | awk 'NR <= 60' | cut -c1-300 >&2
    grep -E '^SUMMARY:|Test unit written|^MS: ' "$log" >&2 || tail -n 20 "$log" >&2
    echo "run_fuzz_wire: the fuzzer stopped with status $status after ${elapsed} s; inputs in $artifacts" >&2
    exit 1
fi

execs="$(sed -n 's/^stat::number_of_executed_units: *\([0-9][0-9]*\).*/\1/p' "$log" | tail -n 1)"
rate="$(sed -n 's/^stat::average_exec_per_sec: *\([0-9][0-9]*\).*/\1/p' "$log" | tail -n 1)"
echo "fuzz: ${execs:-0} executions in ${elapsed} s (${rate:-?}/s), no crash"
