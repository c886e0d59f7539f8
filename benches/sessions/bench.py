#!/usr/bin/env python3
"""Session creation benchmark for `darts serve` with real QEMU (TCG) and the demo machine.

Measures, in one run:
  1. time from a create request to "VNC ready", split into darts' own phases and QEMU's
     (qemu-img, QEMU start-up until it daemonizes, QMP and VNC answering), over N
     sequential creations (each stopped before the next);
  2. creations per minute until the limit refuses: sessions are created back to back
     until `service_max_session_nb` (default 8) refuses one;
  3. darts' memory per live session: PSS of the darts process with those sessions open,
     minus its PSS with none, divided by their number.

Usage: python3 benches/sessions/bench.py [--runs N] [--max-sessions M] [--darts PATH]
Needs: a release build of darts (cargo build --release --bin darts) and the demo machine
(bash tests/setup.sh qemu guest). Prints a markdown report on stdout.
"""
import argparse
import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
# Phases spent waiting for QEMU's tools or QEMU itself (qemu_options probes `qemu -M help`
# once per process when qemu_exec_options is auto); the rest is darts' own work.
QEMU_PHASES = {"disk", "qemu_options", "qemu_launch", "qmp_ready", "vnc_ready"}


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def pss_kib(pid):
    with open(f"/proc/{pid}/smaps_rollup") as f:
        for line in f:
            if line.startswith("Pss:"):
                return int(line.split()[1])
    raise RuntimeError("no Pss line")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=10)
    ap.add_argument("--max-sessions", type=int, default=8)
    ap.add_argument("--darts", default=os.path.join(ROOT, "target/release/darts"))
    ap.add_argument("--machine", default=os.path.join(ROOT, "target/demo-guest/disk.img"))
    args = ap.parse_args()

    work = tempfile.mkdtemp(prefix="darts-session-bench.")
    os.makedirs(f"{work}/machines")
    os.makedirs(f"{work}/etc")
    os.symlink(args.machine, f"{work}/machines/demo.img")
    with open(f"{work}/etc/machines.conf", "w") as f:
        f.write("[demo.img]\n")
    cfg = f"{work}/config.toml"
    with open(cfg, "w") as f:
        f.write(f"""dir_machines = "{work}/machines"
dir_snapshots = "{work}/snapshots"
dir_cfg = "{work}/state"
dir_service = "{work}"
dir_etc = "{work}/etc"
dir_mounts = []
dir_novnc = "{ROOT}/web/novnc"
service_port = {free_port()}
qemu_accel = "tcg"
snapshot_alloc_mem = 0.25
session_stop_grace = 2
service_max_session_nb = {args.max_sessions}
service_max_session_nb_per_user = {args.max_sessions}
service_max_load = 0
service_max_cpu_fraction_nb_per_user = 0
service_max_mem_fraction_nb_per_user = 0
""")
    serve = subprocess.Popen([args.darts, "serve", "-c", cfg], stderr=subprocess.DEVNULL)
    try:
        for _ in range(500):
            if os.path.exists(f"{work}/darts.sock"):
                break
            time.sleep(0.02)

        def darts(*a, check=True):
            r = subprocess.run([args.darts, *a, "-c", cfg], capture_output=True, text=True)
            if check and r.returncode != 0:
                sys.exit(f"darts {' '.join(a)} failed: {r.stderr}")
            return r

        # 1. Create → VNC ready, phase by phase.
        totals, own, qemu, phases = [], [], [], {}
        for _ in range(args.runs):
            t0 = time.monotonic()
            ans = json.loads(darts("start", "demo.img", "--json").stdout)
            totals.append((time.monotonic() - t0) * 1000)
            t = ans["timings_ms"]
            for k, v in t.items():
                phases.setdefault(k, []).append(v)
            q = sum(v for k, v in t.items() if k in QEMU_PHASES)
            qemu.append(q)
            own.append(sum(t.values()) - q)
            darts("stop", ans["session"]["name"])

        # 2. Creations per minute until the limit refuses; 3. memory per session.
        base = pss_kib(serve.pid)
        created, t0 = 0, time.monotonic()
        while True:
            r = darts("start", "demo.img", "--json", check=False)
            if r.returncode != 0:
                refusal = r.stderr.strip().splitlines()[-1]
                break
            created += 1
        elapsed = time.monotonic() - t0
        time.sleep(1)
        loaded = pss_kib(serve.pid)
        darts("purge")
    finally:
        serve.terminate()
        serve.wait()
        subprocess.run(["pkill", "-9", "-f", work])
        shutil.rmtree(work, ignore_errors=True)

    med = statistics.median
    print(f"### Session creation ({args.runs} runs, TCG, demo machine, 256 MiB)\n")
    print("| measure | median | min | max |")
    print("|---|---|---|---|")
    print(f"| create request → VNC ready, as `darts start` sees it (ms) | {med(totals):.0f} | {min(totals):.0f} | {max(totals):.0f} |")
    print(f"| of which QEMU and qemu-img (ms) | {med(qemu):.1f} | {min(qemu):.1f} | {max(qemu):.1f} |")
    print(f"| of which darts (ms) | {med(own):.1f} | {min(own):.1f} | {max(own):.1f} |")
    share = [o / (o + q) * 100 for o, q in zip(own, qemu)]
    print(f"| darts' share of the creation (%) | {med(share):.1f} | {min(share):.1f} | {max(share):.1f} |")
    print("\n| phase | owner | median ms |")
    print("|---|---|---|")
    for k, v in phases.items():
        print(f"| {k} | {'QEMU' if k in QEMU_PHASES else 'darts'} | {med(v):.2f} |")
    print(f"\n### Creations until the limit ({args.max_sessions})\n")
    print(f"- {created} sessions in {elapsed:.1f} s = {created / elapsed * 60:.0f} creations per minute; then: {refusal!r}")
    per = (loaded - base) / created if created else float('nan')
    print(f"- darts PSS: {base} KiB with no session, {loaded} KiB with {created}: {per:+.0f} KiB per live session"
          " (a change within a few hundred KiB is allocator noise: a session's state is a record, a"
          " monitor task and a QMP connection)")


if __name__ == "__main__":
    main()
