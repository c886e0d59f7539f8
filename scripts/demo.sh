#!/bin/bash
# scripts/demo.sh: a QEMU desktop in the browser through `darts serve`, on a fresh Debian 12
# machine, with the embedded default: a bundled demo machine, noVNC, no authentication, loopback.
#
#   1. installs QEMU and the build libraries, and builds the demo machine from Debian packages
#      (tests/setup.sh build qemu guest):
#      a Debian kernel and a busybox initramfs on a 32 MiB BIOS-bootable disk image
#   2. builds darts in release mode (unless DARTS_BIN names a darts binary to use)
#   3. writes a configuration under $DARTS_DEMO_DIR (default target/demo): the image enabled
#      as machine `demo.img` in the catalogue, state and snapshots beside it
#   4. runs `darts serve` on 127.0.0.1:$DARTS_DEMO_PORT (default 6080), starts a session with
#      `darts start demo.img` and prints its link
#
# Ctrl-C stops the session and darts. Everything listens on loopback only; from another
# machine, forward the port (ssh -L 6080:127.0.0.1:6080 HOST).
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
PORT=${DARTS_DEMO_PORT:-6080}
GUEST=${DARTS_DEMO_GUEST:-$ROOT/target/demo-guest}
DEMO=${DARTS_DEMO_DIR:-$ROOT/target/demo}

bash tests/setup.sh build qemu guest
if [ -n "${DARTS_BIN:-}" ]; then
  DARTS=$DARTS_BIN # an already built darts (the test of this script passes its own)
else
  echo "==> cargo build --release --bin darts"
  cargo build --release --bin darts
  DARTS=$ROOT/target/release/darts
  [ -z "${CARGO_TARGET_DIR:-}" ] || DARTS=$CARGO_TARGET_DIR/release/darts
fi

if (exec 3<> "/dev/tcp/127.0.0.1/$PORT") 2> /dev/null; then
  echo "port $PORT on 127.0.0.1 is already in use; set DARTS_DEMO_PORT=another" >&2
  exit 1
fi

echo "==> demo machine and configuration in $DEMO"
mkdir -p "$DEMO/machines" "$DEMO/etc"
cp --update "$GUEST/disk.img" "$DEMO/machines/demo.img"
cat > "$DEMO/etc/machines.conf" << CONF
[demo.img]
description=Demo: busybox shell on a Debian kernel (built from Debian packages)
CONF
cat > "$DEMO/config.toml" << CONF
# darts demo: loopback only, no authentication.
dir_machines = "$DEMO/machines"
dir_snapshots = "$DEMO/snapshots"
dir_cfg = "$DEMO/sessions"
dir_service = "$DEMO"
dir_etc = "$DEMO/etc"
dir_mounts = []
dir_novnc = "$ROOT/web/novnc"
dir_html = "$ROOT/web/app"
service_port = $PORT
# One user on a machine that may be busy building: no load-based refusals.
service_max_load = 0
snapshot_alloc_mem = 0.25
snapshot_lifetime = 86400
session_stop_grace = 3
CONF

"$DARTS" serve -c "$DEMO/config.toml" < /dev/null &
SERVE=$!
cleanup() {
  trap - EXIT INT TERM
  echo
  echo "==> stopping the demo session and darts"
  "$DARTS" purge -c "$DEMO/config.toml" > /dev/null 2>&1 || true
  kill "$SERVE" 2> /dev/null || true
  wait "$SERVE" 2> /dev/null || true
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

for _ in $(seq 200); do
  [ -S "$DEMO/darts.sock" ] && break
  kill -0 "$SERVE" 2> /dev/null || { echo "darts serve exited" >&2; exit 1; }
  sleep 0.05
done

echo "==> starting a session (QEMU boots the demo machine)"
"$DARTS" start demo.img -c "$DEMO/config.toml" | tee "$DEMO/session.txt"
URL=$(sed -n 's/^url *//p' "$DEMO/session.txt")

cat << MSG

  Open this in a browser:

    $URL

  or the landing page, to create more sessions: http://127.0.0.1:$PORT/darts/

  darts serves noVNC and routes the websocket to the VM's VNC socket; the VM's own VNC
  password is answered by darts and never reaches the browser. Type into the guest's shell.
  Sessions: $DARTS status -c $DEMO/config.toml
  Press Ctrl-C to stop.

MSG

wait "$SERVE" || true
