#!/usr/bin/env bash
# Smoke run of the load tool: builds the release binaries, then measures darts (and
# direct TCP, for the ratios) for a second per scenario with small counts, including
# darts in front of vnc-password and x509 (VeNCrypt) targets. About 40 s after the build.
# Fails only if the tool fails (a gateway that does not start, a session that breaks, a
# secured handshake that does not complete); missed performance targets are reported,
# never a failure.
#
#   benches/smoke.sh                 # darts + direct
#   GATEWAYS=darts benches/smoke.sh  # darts only
#   GATEWAYS=direct,websockify,darts benches/smoke.sh
#   SECURITY=none benches/smoke.sh   # plain targets only
set -euo pipefail

cd "$(dirname "$0")/.."
GATEWAYS=${GATEWAYS:-direct,darts}
SECURITY=${SECURITY:-none,vnc-password,x509}
DURATION=${DURATION:-1}

cargo build --release --locked -p darts -p darts-load

exec timeout --signal=TERM --kill-after=15 300 \
    target/release/darts-load \
    --gateways "$GATEWAYS" \
    --security "$SECURITY" \
    --duration "$DURATION" \
    --warmup 0.3 \
    --idle-sessions 200 \
    --idle-ramp-timeout 30 \
    --hs-concurrency 8
