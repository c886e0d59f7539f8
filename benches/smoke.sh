#!/usr/bin/env bash
# Smoke run of the load tool: builds the release binaries, then measures darts (and
# direct TCP, for the ratios) for a second per scenario with small counts, including
# darts in front of vnc-password and x509 (VeNCrypt) targets. About 40 s after the build.
# Then a short soak (`darts-load soak`, about 90 s): 3 real sessions of the demo machine
# (target/demo-guest, `bash tests/setup.sh guest`) through `darts serve`, one killed QEMU
# and one gateway restart, every session checked after each.
# Fails only if the tool fails (a gateway that does not start, a session that breaks, a
# secured handshake that does not complete, a soak session lost or invariant broken, a
# fault not injected); missed performance targets are reported, never a failure.
#
#   benches/smoke.sh                 # darts + direct, then the soak
#   GATEWAYS=darts benches/smoke.sh  # darts only
#   GATEWAYS=direct,websockify,darts benches/smoke.sh
#   SECURITY=none benches/smoke.sh   # plain targets only
#   SOAK=0 benches/smoke.sh          # without the soak
set -euo pipefail

cd "$(dirname "$0")/.."
GATEWAYS=${GATEWAYS:-direct,darts}
SECURITY=${SECURITY:-none,vnc-password,x509}
DURATION=${DURATION:-1}
SOAK=${SOAK:-1}

cargo build --release --locked -p darts -p darts-load

timeout --signal=TERM --kill-after=15 300 \
    target/release/darts-load \
    --gateways "$GATEWAYS" \
    --security "$SECURITY" \
    --duration "$DURATION" \
    --warmup 0.3 \
    --idle-sessions 200 \
    --idle-ramp-timeout 30 \
    --hs-concurrency 8

[ "$SOAK" = 1 ] || exit 0
if [ ! -f target/demo-guest/disk.img ]; then
    echo "benches/smoke.sh: the soak needs the demo machine: bash tests/setup.sh guest" >&2
    exit 1
fi
# SIGINT makes the soak wind down and report; the bound only catches a hang.
exec timeout --signal=INT --kill-after=120 900 \
    target/release/darts-load soak \
    --duration 75s \
    --sessions 3 \
    --fault-every 30s \
    --stream 8s \
    --idle 8s \
    --require-faults \
    --scratch target/soak/smoke \
    --output target/soak/smoke.json
