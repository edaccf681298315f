#!/usr/bin/env bash
# run_fuzz.sh: build the front end's libFuzzer target and fuzz it for a while.
#
#   tests/fuzz/run_fuzz.sh BUILD_DIR
#
# Builds BUILD_DIR/fuzz_check with clang++ (CXX, default clang++) from every
# dsl/src/*.cpp and tests/fuzz/fuzz_check.cpp, under ASan, UBSan and libFuzzer.
# Seeds a corpus from tests/dsl/data/*.mesh, topologies/**/*.mesh and the
# generated inputs below (deep nesting, long lines, odd bytes), then fuzzes
# for FUZZ_SECONDS seconds (30). New inputs accumulate in BUILD_DIR/fuzz-corpus
# (FUZZ_CORPUS to put them elsewhere); a crashing, leaking or hanging input is
# saved in BUILD_DIR/fuzz-artifacts/ and the script exits non-zero. On success
# it prints `fuzz: N executions in S s (R/s), no crash`. Extra arguments after
# BUILD_DIR go to libFuzzer (say -runs=N for a campaign).
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
seconds="${FUZZ_SECONDS:-30}"
# stack-depth: how deep an input drives the stack is a coverage feature, so the
# fuzzer keeps inputs that nest deeper than any before.
flags=(-std=c++20 -O1 -g -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=undefined
       -fsanitize-coverage=stack-depth)

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
    "$cxx" "${flags[@]}" -I"$root/dsl/include" -I"$root/dsl/src" -I"$root/drivers/include" -c "$1" -o "$2"
}
headers=("$root"/dsl/include/meshrun/dsl/*.hpp "$root"/dsl/src/*.hpp "$root"/drivers/include/meshrun/drivers/line_mode.hpp)
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
corpus="${FUZZ_CORPUS:-$build/fuzz-corpus}"
seeds="$build/fuzz-seeds"
artifacts="$build/fuzz-artifacts"
rm -rf "$seeds"
mkdir -p "$corpus" "$seeds" "$artifacts"
n=0
for f in "$root"/tests/dsl/data/*.mesh "$root"/topologies/**/*.mesh; do
    cp "$f" "$seeds/$(printf '%03d' "$n")-$(basename "$f")"
    n=$((n + 1))
done

# Generated seeds: what the examples lack, each within -max_len. Nesting at
# the limit (max_nesting, 256 levels: the `ack` or `toggle` is one), just past
# it, and far past it, in each recursive shape of the grammar; actions running
# actions; long lines, odd bytes and wide characters for the rendering. Before
# nesting was limited, parens-700 crashed the front end at once (a stack
# overflow at about 600 levels, on the stack the fuzzer runs with, below), and
# the others took a few mutations to get there.
times() {  # times TEXT N: TEXT, N times over
    local out=""
    for ((i = 0; i < $2; i++)); do out+="$1"; done
    printf '%s' "$out"
}
seed() {  # seed NAME TEXT
    printf '%s' "$2" >"$seeds/gen-$1.mesh"
    n=$((n + 1))
}
rule() { printf 'node n at :1 {\n    pin p = out gpiochip0 17\n    on c -> %s\n}\n' "$1"; }
for depth in 255 300 700; do seed "parens-$depth" "$(rule "ack $(times '(' "$depth")1$(times ')' "$depth")")"; done
for depth in 255 300 480; do seed "interpolation-$depth" "$(rule "ack $(times '"{' "$depth")1$(times '}"' "$depth")")"; done
for depth in 255 300 480; do seed "not-$depth" "$(rule "ack $(times 'not ' "$depth")1")"; done
for depth in 255 300 1900; do seed "minus-$depth" "$(rule "ack $(times '-' "$depth")1")"; done
seed "random-245" "$(rule "ack $(times 'random(' 245)1$(times ')' 245)")"
for parens in 105 106; do  # 150 blocks, the `ack` and its parentheses: 256 levels, then 257
    seed "blocks-$((151 + parens))" "$(rule "$(times 'repeat 1 {' 150)ack $(times '(' "$parens")p$(times ')' "$parens")$(times '}' 150)")"
done
seed "after-150" "$(rule "$(times 'after 1s -> ' 150)toggle p")"
seed "after-as-150" "$(rule "$(times 'after 1s as d -> ' 150)cancel d")"
for terms in 256 400; do seed "sum-$terms" "$(rule "ack 1$(times ' + 1' $((terms - 1)))")"; done
seed "or-300" "$(rule "ack p$(times ' or p' 300)")"
# `if`: nested at the limit and past it (each `if` is a level, the `toggle` one more), a long
# `else if` chain (a loop, not a nesting), `else` on the next line, and `if`/`else` as names.
for depth in 255 300; do seed "ifs-$depth" "$(rule "$(times 'if p{' "$depth")toggle p$(times '}' "$depth")")"; done
seed "else-if-150" "$(rule "if p {ack 1}$(times ' else if p{}' 150) else {ack 2}")"
seed "if-else-lines" "$(printf 'node n at :1 {\n pin if = out gpiochip0 1\n action else -> toggle if\n on c -> {\n  if if == 1 {\n   else\n  }\n  # between\n  else if value > 2 { ack 1 }\n  else { if = 1; after 1s -> if tick {} }\n  else\n }\n}\n')"
# A rule runs a0, each action runs the next inside 40 blocks, the last acks: 124 levels.
calls="node n at :1 {\n on c -> a0\n"
for i in 0 1 2; do
    next="a$((i + 1))"
    [[ $i -eq 2 ]] && next="ack 1"
    calls+=" action a$i { $(times 'repeat 1 {' 40)$next$(times '}' 40) }\n"
done
seed "calls-124" "$(printf "$calls}\n")"
seed "long-line" "$(rule "ack \"$(times 'abcdefghij' 90)\" + q + \"$(times 'klmnopqrst' 80)\"")"
seed "long-line-wide" "$(rule "log \"$(times 'ü中' 200){x}$(times '€' 150)\" + q")"
printf '\xef\xbb\xbfnode k\xc3\xbcche at :1 {\n on c -> ack "\x1b[31m\xff\xe2\x80\xae{}\\t"\n}\n\x00\x01\x7f\r\n' >"$seeds/gen-bytes.mesh"
n=$((n + 1))

# A dictionary of the language's words and punctuation helps the mutator.
dict="$build/mesh.dict"
words=(mesh include secret env discovery etcd node at test pin action every on when toggle
       send to ack log after repeat value tick random not and or in out active_low initial
       pull_up pull_down debounce times drive advance expect within received gpiochip0
       localhost 127.0.0.1 '[::1]' us ms s m h '->' '==' '!=' '<=' '>=' '\"' '\\' '\n'
       '\{' '\}' '{' '}' '/' '.' ':' ';' '"' '#' 'http://127.0.0.1:2379'
       '(' ')' '+' '-' '=' '<' '>' '{value}' 'random(' 'repeat 2 {' 'after 1s ->' '"{'
       if else 'if p {' '} else {' '} else if ')
for w in "${words[@]}"; do
    w="${w//\\/\\\\}"   # libFuzzer's dictionary escapes backslashes and quotes
    w="${w//\"/\\\"}"
    printf '"%s"\n' "$w"
done > "$dict"
# Bytes as they are (a newline, a tab, a byte order mark, UTF-8 and not), in libFuzzer's \xNN.
printf '"%s"\n' '\x0A' '\x09' '\x0D\x0A' '\xEF\xBB\xBF' '\xC3\xBC' '\xE4\xB8\xAD' '\xE2\x80\xAE' '\xFF' '\x1B' >> "$dict"

# Run from an empty directory: relative includes in fuzz inputs then find nothing.
# -max_len=2048: an input costs about its length, and 2 KiB holds a file of a
# few nodes or a nesting of 600 parentheses; at 4096 the corpus drifted to
# 2 KiB inputs and half the speed.
# A 1 MiB stack (ulimit -s): recursion that an input drives overflows it at an
# eighth of the depth that overflows the usual 8 MiB, so within -max_len. The
# front end at max_nesting needs about half of it under the sanitizers.
# -entropic=0: the entropic schedule ran 1.7x fewer inputs a second here.
# ASan's quarantine of freed memory is kept to 64 MiB (256 by default): the
# process stays near 160 MB instead of 470.
workdir="$(mktemp -d "${TMPDIR:-/tmp}/meshrun-fuzz-run.XXXXXX")"
log="$build/fuzz.log"
trap 'rm -rf "$workdir"' EXIT

echo "run_fuzz: fuzzing for ${seconds} s with $n seeds${*:+ and flags $*} (log: $log)"
start=$(date +%s)
status=0
(
    cd "$workdir"
    ulimit -s 1024
    TMPDIR="$workdir" ASAN_OPTIONS="quarantine_size_mb=64${ASAN_OPTIONS:+:$ASAN_OPTIONS}" \
        "$build/fuzz_check" "$corpus" "$seeds" \
        -dict="$dict" -entropic=0 \
        -max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 -max_len=2048 \
        -print_final_stats=1 -artifact_prefix="$artifacts/" "$@"
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
rate="$(sed -n 's/^stat::average_exec_per_sec: *\([0-9][0-9]*\).*/\1/p' "$log" | tail -n 1)"
echo "fuzz: ${execs:-0} executions in ${elapsed} s (${rate:-?}/s), no crash"
