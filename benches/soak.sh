#!/usr/bin/env bash
# Soak run of darts: builds darts and darts-load (release), builds the demo machine if it is
# missing, then runs `darts-load soak` for DURATION (default 30m): SESSIONS real sessions
# (default 4, one of them held for the whole run) cycling through `darts serve`: created,
# viewed through the gateway (streaming, idle, reconnecting), stopped; every FAULT_EVERY
# (default 5m) a fault, in turn the QEMU of a random short-lived session killed and the
# gateway restarted. darts' memory and open files are sampled every 5 s.
#
# The report goes to target/soak/: soak-STAMP.json (every count, fault and sample),
# soak-STAMP.md (the table for benches/RESULTS.md, then details) and soak-STAMP.darts.log
# (darts' log). The script fails if a
# session was lost or an invariant broke; step errors and memory or open-file growth are
# reported, never a failure. Ctrl-C: no new fault, a last check of every session, then
# every session is stopped and the report written.
# Each session is a QEMU under TCG: on a 2-core machine keep SESSIONS at 4 or below.
#
#   benches/soak.sh                          # 30 minutes
#   benches/soak.sh 2h                       # another duration
#   SESSIONS=6 FAULT_EVERY=10m benches/soak.sh 1h
#   benches/soak.sh 30m --seed 42 --viewers 3   # further options go to darts-load soak
set -euo pipefail

cd "$(dirname "$0")/.."
DURATION=${1:-30m}
[ $# -gt 0 ] && shift
SESSIONS=${SESSIONS:-4}
FAULT_EVERY=${FAULT_EVERY:-5m}
OUT=target/soak

[ -f target/demo-guest/disk.img ] || bash tests/setup.sh guest
cargo build --release --locked -p darts -p darts-load

mkdir -p "$OUT"
STAMP=$(date -u +%Y%m%dT%H%M%SZ)
exec target/release/darts-load soak \
    --duration "$DURATION" \
    --sessions "$SESSIONS" \
    --fault-every "$FAULT_EVERY" \
    --scratch "$OUT/scratch" \
    --output "$OUT/soak-$STAMP.json" \
    "$@"
