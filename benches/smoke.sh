#!/usr/bin/env bash
# Smoke run of the load tool: builds the release binaries, then measures darts (and
# direct TCP, for the ratios) for a couple of seconds per scenario with small counts.
# Fails only if the tool fails (a gateway that does not start, a session that breaks);
# missed performance targets are reported, never a failure.
#
#   benches/smoke.sh                 # darts + direct
#   GATEWAYS=darts benches/smoke.sh  # darts only
#   GATEWAYS=direct,websockify,darts benches/smoke.sh
set -euo pipefail

cd "$(dirname "$0")/.."
GATEWAYS=${GATEWAYS:-direct,darts}
DURATION=${DURATION:-2}

cargo build --release --locked -p darts -p darts-load

exec timeout --signal=TERM --kill-after=15 300 \
    target/release/darts-load \
    --gateways "$GATEWAYS" \
    --duration "$DURATION" \
    --warmup 0.5 \
    --idle-sessions 200 \
    --idle-ramp-timeout 30 \
    --hs-concurrency 8
