#!/usr/bin/env bash
# Fuzzes each libFuzzer target for a while (`make fuzz` builds them and calls this) and fails when any
# target stops on a crash, a sanitizer report, a leak or a timeout. Prints each target's coverage.
#
#   scripts/fuzz.sh BUILD SECONDS NAME...     (BUILD/libfuzzer/NAME, from the repository root)
#
# A target reads tests/fuzz/corpus/NAME and tests/fuzz/seeds/NAME and writes the inputs it finds to
# BUILD/corpus/NAME, so the committed corpora change only when someone merges into them:
#   BUILD/libfuzzer/NAME -merge=1 tests/fuzz/corpus/NAME BUILD/corpus/NAME
# A failing input is saved as BUILD/crashes/NAME-*; `make test` replays the committed corpora.
set -u
cd "$(dirname "$0")/.."
build=$1 seconds=$2
shift 2
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1} # a UBSan report with its stack
failed=()
mkdir -p "$build/crashes"
for name in "$@"; do
    mkdir -p "$build/corpus/$name"
    log=$build/$name.log
    "$build/libfuzzer/$name" -max_total_time="$seconds" -max_len=65536 -timeout=25 -print_final_stats=1 \
        -artifact_prefix="$build/crashes/$name-" "$build/corpus/$name" "tests/fuzz/corpus/$name" \
        "tests/fuzz/seeds/$name" >"$log" 2>&1
    rc=$?
    done_line=$(grep -E '^#[0-9]+[[:space:]]+DONE' "$log" | tail -1)
    if [[ $rc -eq 0 && -n $done_line ]]; then
        echo "ok   $name: $(sed -E 's/.*DONE[[:space:]]+//' <<<"$done_line")"
        continue
    fi
    failed+=("$name")
    echo "FAIL $name (exit $rc); the report, from $log:"
    awk '/^==[0-9]+==ERROR|runtime error:|deadly signal|ERROR: libFuzzer/ { on = 1 }
         /^stat::|artifact_prefix=/ { on = 0 }
         on && n++ < 40 { print "    " $0 }' "$log"
    last=$(grep -E '^#[0-9]+' "$log" | tail -1)
    [[ -n $last ]] && echo "    coverage when it stopped: $(sed -E 's/^#[0-9]+[[:space:]]+[A-Z]+[[:space:]]+//' <<<"$last")"
    grep -E 'Test unit written to' "$log" | sed 's/^/    /'
done
if [[ ${#failed[@]} -gt 0 ]]; then
    echo "fuzz: ${#failed[@]} of $# targets failed: ${failed[*]}"
    exit 1
fi
echo "fuzz: $# targets, ${seconds} s each, no report"
