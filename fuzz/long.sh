#!/usr/bin/env bash
# Long fuzzing: every target (or the ones named) for MINUTES each, one after the other.
#
#   fuzz/long.sh MINUTES [TARGET...]
#
# The corpus grows in fuzz/grown/corpus/<target>/ (kept between runs, not committed) on
# top of the committed seeds in fuzz/corpus/<target>/. Crashes go to
# fuzz/artifacts/<target>/; the run goes on with the next target and the script exits 1
# at the end if any target crashed. JOBS=N runs N fuzzing processes per target.
set -euo pipefail
cd "$(dirname "$0")"

if [[ $# -lt 1 || ! $1 =~ ^[0-9]+$ ]]; then
    echo "usage: $0 MINUTES [TARGET...]" >&2
    exit 2
fi
minutes=$1
shift
flags=(--sanitizer none --debug-assertions)
targets=("$@")
if ((${#targets[@]} == 0)); then
    mapfile -t targets < <(cargo fuzz list)
fi
jobs=${JOBS:-1}

cargo fuzz build "${flags[@]}"
failed=()
for target in "${targets[@]}"; do
    mkdir -p "grown/corpus/$target" "corpus/$target" grown/logs
    extra=()
    [[ -f dict/$target.dict ]] && extra+=("-dict=dict/$target.dict")
    if ((jobs > 1)); then
        extra+=("-fork=$jobs")
    fi
    echo "== $target for $minutes min"
    set +e
    cargo fuzz run "${flags[@]}" "$target" "grown/corpus/$target" "corpus/$target" -- \
        -max_total_time=$((minutes * 60)) -timeout=10 -rss_limit_mb=2048 "${extra[@]}" \
        2>&1 | tee "grown/logs/$target.log" | grep -E '^(#[0-9]+.*(pulse|DONE)|Done|SUMMARY|thread)'
    status=${PIPESTATUS[0]}
    set -e
    if ((status != 0)); then
        failed+=("$target")
    fi
done

if ((${#failed[@]})); then
    echo "crashing targets: ${failed[*]} (inputs in fuzz/artifacts/, logs in fuzz/grown/logs/)" >&2
    exit 1
fi
