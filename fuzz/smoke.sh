#!/usr/bin/env bash
# Fuzz smoke test: builds every target once, replays its seeds and fuzzes it for a few
# seconds; fails if any target crashes, panics or hangs.
#
#   fuzz/smoke.sh [SECONDS_PER_TARGET]      (default 5)
#   PARALLEL=1 fuzz/smoke.sh                (targets at once; default 2)
#
# Needs cargo-fuzz (`cargo install --locked cargo-fuzz`); runs on stable Rust (no
# sanitizer, debug assertions on). New corpus entries go to a temporary directory, so the
# committed seeds stay as they are; crashing inputs are kept in fuzz/artifacts/<target>/.
set -euo pipefail
cd "$(dirname "$0")"

seconds=${1:-5}
parallel=${PARALLEL:-2}
flags=(--sanitizer none --debug-assertions)

if ! cargo fuzz --version >/dev/null 2>&1; then
    echo "cargo-fuzz is missing: cargo install --locked cargo-fuzz" >&2
    exit 2
fi

start=$SECONDS
cargo fuzz build "${flags[@]}"
echo "built in $((SECONDS - start)) s"

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

# Fuzzes one target; leaves "ok RUNS SECONDS" or "fail" in $work/TARGET.status.
run_one() {
    local target=$1 t0=$SECONDS extra=()
    mkdir -p "$work/$target" "corpus/$target"
    [[ -f dict/$target.dict ]] && extra+=("-dict=dict/$target.dict")
    # Inputs that once crashed are replayed first, as part of the seeds.
    local seeds=("corpus/$target")
    [[ -d regressions/$target ]] && seeds+=("regressions/$target")
    if cargo fuzz run "${flags[@]}" "$target" "$work/$target" "${seeds[@]}" -- \
        -max_total_time="$seconds" -timeout=10 -rss_limit_mb=1024 "${extra[@]}" \
        >"$work/$target.log" 2>&1; then
        local runs
        runs=$(grep -Eo '^Done [0-9]+ runs' "$work/$target.log" | grep -Eo '[0-9]+' || echo "?")
        echo "ok $runs $((SECONDS - t0))" >"$work/$target.status"
    else
        echo "fail" >"$work/$target.status"
    fi
}

mapfile -t targets < <(cargo fuzz list)
for target in "${targets[@]}"; do
    while (($(jobs -rp | wc -l) >= parallel)); do
        wait -n || true
    done
    run_one "$target" &
done
wait

failed=()
for target in "${targets[@]}"; do
    read -r status runs took <"$work/$target.status" || status=fail
    if [[ $status == ok ]]; then
        echo "ok   $target: $runs runs in $took s"
    else
        echo "FAIL $target" >&2
        grep -E -A6 'panicked at|ERROR: libFuzzer|SUMMARY' "$work/$target.log" >&2 ||
            tail -n 40 "$work/$target.log" >&2
        grep -E 'Test unit written' "$work/$target.log" >&2 || true
        failed+=("$target")
    fi
done

echo "fuzz smoke took $((SECONDS - start)) s"
if ((${#failed[@]})); then
    echo "crashing targets: ${failed[*]} (inputs in fuzz/artifacts/)" >&2
    exit 1
fi
