#!/usr/bin/env bash
# Runs every test program under BUILD/tests and prints one closing line "tests: N passed, N failed"
# (", N skipped" when tests could not run here: each says why on its "skip" line).
set -u
build=${1:-build}
export CPEFT_BIN="$build/cpeft"   # the CLI under test, for tests that run the program
export CPEFT_BUILD="$build"        # the build folder: libcpeft.so and the examples, for the tests that check them
passed=0; failed=0; skipped=0; failed_programs=()
for t in $(find "$build/tests" -type f -executable | sort); do
    out=$("$t" 2>&1); rc=$?
    echo "$out" | grep -v '^ok   '
    line=$(echo "$out" | grep -E '^[0-9]+ passed, [0-9]+ failed$' | tail -1)
    if [[ -z "$line" ]]; then
        echo "FAIL $t (exit $rc, no summary)"; failed=$((failed + 1)); failed_programs+=("$t"); continue
    fi
    s=$(echo "$out" | grep -E '^[0-9]+ skipped$' | tail -1); s=${s%% skipped*}; skipped=$((skipped + ${s:-0}))
    p=${line%% passed*}; f=${line#*passed, }; f=${f%% failed*}
    passed=$((passed + p)); failed=$((failed + f))
    if [[ $rc -ne 0 && $f -eq 0 ]]; then failed=$((failed + 1)); fi
    [[ $rc -ne 0 ]] && failed_programs+=("$t")
done
[[ ${#failed_programs[@]} -gt 0 ]] && echo "failing programs: ${failed_programs[*]}"
echo "tests ($build): $passed passed, $failed failed$([[ $skipped -gt 0 ]] && echo ", $skipped skipped")"
[[ $failed -eq 0 ]]
