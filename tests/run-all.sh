#!/bin/bash
# tests/run-all.sh: every check and test of darts, in one command.
#
#   1. cargo fmt --all --check
#   2. cargo clippy --workspace --all-targets -- -D warnings
#   3. bash fuzz/smoke.sh      (when present: short fuzzing runs)
#   4. bash benches/smoke.sh   (when present: quick benchmark sanity run)
#   5. cargo nextest run --workspace --no-fail-fast   (last, so its summary closes the output)
#
# The end-to-end tests (tests/e2e_*.rs) need QEMU, Chromium, node with tests/e2e/node/node_modules
# and the test guest: run `bash tests/setup.sh` once first. Extra arguments go to nextest.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD

# What the end-to-end tests read.
export DARTS_E2E_GUEST=${DARTS_E2E_GUEST:-$ROOT/target/e2e-guest}
export CHROMIUM=${CHROMIUM:-/usr/bin/chromium}
export RUST_BACKTRACE=${RUST_BACKTRACE:-1}
export CARGO_TERM_COLOR=${CARGO_TERM_COLOR:-never}

timings=()
step() { # step NAME COMMAND...
  local name=$1; shift
  local t0=$SECONDS
  echo "==> $name"
  "$@"
  timings+=("$(printf '%-24s %4d s' "$name" $((SECONDS - t0)))")
}

step "cargo fmt" cargo fmt --all --check
step "cargo clippy" cargo clippy --workspace --all-targets -- -D warnings
if [ -f fuzz/smoke.sh ]; then step "fuzz smoke" bash fuzz/smoke.sh; fi
if [ -f benches/smoke.sh ]; then step "bench smoke" bash benches/smoke.sh; fi

echo "==> timings so far"
printf '    %s\n' "${timings[@]}"
echo "==> cargo nextest run --workspace --no-fail-fast"
exec cargo nextest run --workspace --no-fail-fast "$@"
