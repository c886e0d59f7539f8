#!/bin/bash
# scripts/demo.sh: a QEMU desktop in the browser through darts, on a fresh Debian 12 machine.
#
#   1. installs QEMU and the guest tools, and builds the tiny test guest (tests/setup.sh qemu guest)
#   2. builds darts in release mode
#   3. boots the guest in QEMU (TCG) with its VNC server on a unix socket in a temp dir
#   4. runs `darts proxy --web web/novnc` on 127.0.0.1:$DARTS_DEMO_PORT (default 6080) with a
#      token file pointing at that socket, and prints the URL to open
#
# Ctrl-C stops QEMU and darts and removes the temp dir. Everything listens on loopback only;
# from another machine, forward the port (ssh -L 6080:127.0.0.1:6080 HOST).
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
PORT=${DARTS_DEMO_PORT:-6080}
GUEST=${DARTS_E2E_GUEST:-$ROOT/target/e2e-guest}

bash tests/setup.sh qemu guest
echo "==> cargo build --release --bin darts"
cargo build --release --bin darts
DARTS=$ROOT/target/release/darts
[ -z "${CARGO_TARGET_DIR:-}" ] || DARTS=$CARGO_TARGET_DIR/release/darts

WORK=$(mktemp -d /tmp/darts-demo.XXXXXX)
pids=()
cleanup() {
  trap - EXIT INT TERM
  echo
  echo "==> stopping"
  local p
  for p in "${pids[@]}"; do kill "$p" 2> /dev/null || true; done
  for p in "${pids[@]}"; do wait "$p" 2> /dev/null || true; done
  rm -rf "$WORK"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

if (exec 3<> "/dev/tcp/127.0.0.1/$PORT") 2> /dev/null; then
  echo "port $PORT on 127.0.0.1 is already in use; set DARTS_DEMO_PORT=another" >&2
  exit 1
fi

echo "==> booting the guest (QEMU, TCG)"
qemu-system-x86_64 -accel tcg,tb-size=32 -nodefaults -machine pc -m 128 -vga std -display none \
  -name darts-demo -vnc "unix:$WORK/vnc.sock" -serial "file:$WORK/serial.log" \
  -kernel "$GUEST/vmlinuz" -initrd "$GUEST/initrd.gz" -append "console=tty0 quiet e2e.boot=darts-demo" \
  < /dev/null > "$WORK/qemu.log" 2>&1 &
pids+=($!)
QEMU_PID=$!
for _ in $(seq 200); do
  [ -S "$WORK/vnc.sock" ] && break
  kill -0 "$QEMU_PID" 2> /dev/null || { cat "$WORK/qemu.log" >&2; exit 1; }
  sleep 0.05
done
[ -S "$WORK/vnc.sock" ] || { echo "QEMU's VNC socket did not appear" >&2; exit 1; }

TOKEN=$(od -An -N12 -tx1 /dev/urandom | tr -d ' \n')
mkdir "$WORK/tokens"
echo "$TOKEN: unix_socket:$WORK/vnc.sock" > "$WORK/tokens/demo.cfg"

echo "==> starting darts proxy on 127.0.0.1:$PORT"
"$DARTS" proxy --web "$ROOT/web/novnc" --token-plugin TokenFile --token-source "$WORK/tokens" \
  "127.0.0.1:$PORT" < /dev/null &
pids+=($!)
DARTS_PID=$!
for _ in $(seq 200); do
  (exec 3<> "/dev/tcp/127.0.0.1/$PORT") 2> /dev/null && break
  kill -0 "$DARTS_PID" 2> /dev/null || { echo "darts exited" >&2; exit 1; }
  sleep 0.05
done

for _ in $(seq 600); do
  grep -q E2E-GUEST-READY "$WORK/serial.log" 2> /dev/null && break
  sleep 0.1
done
grep -q E2E-GUEST-READY "$WORK/serial.log" 2> /dev/null && echo "==> guest booted (busybox shell on its screen)"

cat << MSG

  Open this in a browser:

    http://127.0.0.1:$PORT/vnc.html?autoconnect=true&resize=remote&path=websockify%3Ftoken%3D$TOKEN

  The page is noVNC; darts serves it and routes the websocket to the guest's VNC socket.
  Type into the guest's shell. Health: http://127.0.0.1:$PORT/healthz  Metrics: /metrics
  Press Ctrl-C to stop.

MSG

# Runs until Ctrl-C, or until QEMU or darts ends.
wait -n "${pids[@]}" || true
echo "QEMU or darts stopped" >&2
