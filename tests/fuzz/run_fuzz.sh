#!/usr/bin/env bash
# run_fuzz.sh: build the front end's libFuzzer target and fuzz it for a while.
#
#   tests/fuzz/run_fuzz.sh BUILD_DIR
#
# Builds BUILD_DIR/fuzz_check with clang++ (CXX, default clang++) from every
# dsl/src/*.cpp and tests/fuzz/fuzz_check.cpp, under ASan, UBSan and libFuzzer.
# Seeds a corpus from tests/dsl/data/*.mesh and topologies/**/*.mesh, then
# fuzzes for FUZZ_SECONDS seconds (60). New inputs accumulate in
# BUILD_DIR/fuzz-corpus; a crashing, leaking or hanging input is saved in
# BUILD_DIR/fuzz-artifacts/ and the script exits non-zero. On success it
# prints `fuzz: N executions in S s, no crash`.
set -euo pipefail

if [[ $# -ne 1 || "$1" == -* ]]; then
    echo "usage: $0 BUILD_DIR" >&2
    exit 2
fi

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
mkdir -p "$1"
build="$(cd "$1" && pwd)"
cxx="${CXX:-clang++}"
seconds="${FUZZ_SECONDS:-60}"
flags=(-std=c++20 -O1 -g -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=undefined)

shopt -s nullglob globstar

sources=("$root"/dsl/src/*.cpp)
if [[ ${#sources[@]} -eq 0 ]]; then
    echo "run_fuzz: no sources in $root/dsl/src" >&2
    exit 2
fi

# Compile each translation unit on its own, in parallel, then link.
objdir="$build/fuzz-obj"
mkdir -p "$objdir"
jobs="$(nproc 2>/dev/null || echo 2)"
pids=()
objects=()
compile() {  # compile SOURCE OBJECT; the fuzzer's -fsanitize=fuzzer only instruments with -c
    "$cxx" "${flags[@]}" -I"$root/dsl/include" -I"$root/dsl/src" -c "$1" -o "$2"
}
headers=("$root"/dsl/include/meshrun/dsl/*.hpp "$root"/dsl/src/*.hpp)
up_to_date() {  # up_to_date OBJECT SOURCE: the object is newer than its source and every header
    [[ -f "$1" && "$1" -nt "$2" ]] || return 1
    local h
    for h in "${headers[@]}"; do [[ "$1" -nt "$h" ]] || return 1; done
}
for src in "${sources[@]}" "$root/tests/fuzz/fuzz_check.cpp"; do
    obj="$objdir/$(basename "${src%.cpp}").o"
    objects+=("$obj")
    up_to_date "$obj" "$src" && continue
    compile "$src" "$obj" &
    pids+=($!)
    if [[ ${#pids[@]} -ge $jobs ]]; then
        wait "${pids[0]}" || { echo "run_fuzz: compiling failed" >&2; exit 2; }
        pids=("${pids[@]:1}")
    fi
done
for pid in "${pids[@]}"; do
    wait "$pid" || { echo "run_fuzz: compiling failed" >&2; exit 2; }
done
rm -f "$build/fuzz_check"
"$cxx" "${flags[@]}" "${objects[@]}" -lfmt -o "$build/fuzz_check"

# The corpus: what earlier runs found, plus this tree's examples as seeds.
corpus="$build/fuzz-corpus"
seeds="$build/fuzz-seeds"
artifacts="$build/fuzz-artifacts"
rm -rf "$seeds"
mkdir -p "$corpus" "$seeds" "$artifacts"
n=0
for f in "$root"/tests/dsl/data/*.mesh "$root"/topologies/**/*.mesh; do
    cp "$f" "$seeds/$(printf '%03d' "$n")-$(basename "$f")"
    n=$((n + 1))
done

# A dictionary of the language's words and punctuation helps the mutator.
dict="$build/mesh.dict"
words=(mesh include secret env discovery etcd node at test pin action every on when toggle
       send to ack log after repeat value tick random not and or in out active_low initial
       pull_up pull_down debounce times drive advance expect within received gpiochip0
       localhost 127.0.0.1 '[::1]' us ms s m h '->' '==' '!=' '<=' '>=' '\"' '\\' '\n'
       '\{' '\}' '{' '}' '/' '.' ':' ';' '"' '#' 'http://127.0.0.1:2379')
for w in "${words[@]}"; do
    w="${w//\\/\\\\}"   # libFuzzer's dictionary escapes backslashes and quotes
    w="${w//\"/\\\"}"
    printf '"%s"\n' "$w"
done > "$dict"

# Run from an empty directory: relative includes in fuzz inputs then find nothing.
# -entropic=0: with this grammar's ~30k coverage features, the entropic
# schedule's bookkeeping took three quarters of the time (about 4x fewer runs).
workdir="$(mktemp -d "${TMPDIR:-/tmp}/meshrun-fuzz-run.XXXXXX")"
log="$build/fuzz.log"
trap 'rm -rf "$workdir"' EXIT

echo "run_fuzz: fuzzing for ${seconds} s with $n seeds (log: $log)"
start=$(date +%s)
status=0
(
    cd "$workdir"
    TMPDIR="$workdir" "$build/fuzz_check" "$corpus" "$seeds" \
        -dict="$dict" -entropic=0 \
        -max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 -max_len=4096 \
        -print_final_stats=1 -artifact_prefix="$artifacts/"
) >"$log" 2>&1 || status=$?
elapsed=$(( $(date +%s) - start ))

if [[ $status -ne 0 ]]; then
    # The first report in full (up to 60 lines), then every summary line.
    sed -n '/ERROR: \|==[0-9]*==WARNING\|runtime error:/,$p' "$log" | awk 'NR <= 60' | cut -c1-300 >&2
    grep -E '^SUMMARY:|Test unit written|^MS: ' "$log" >&2 || tail -n 20 "$log" >&2
    echo "run_fuzz: the fuzzer stopped with status $status after ${elapsed} s; inputs in $artifacts" >&2
    exit 1
fi

execs="$(sed -n 's/^stat::number_of_executed_units: *\([0-9][0-9]*\).*/\1/p' "$log" | tail -n 1)"
if [[ -z "$execs" ]]; then
    execs="$(sed -n 's/^#\([0-9][0-9]*\).*/\1/p' "$log" | tail -n 1)"
fi
echo "fuzz: ${execs:-0} executions in ${elapsed} s, no crash"
