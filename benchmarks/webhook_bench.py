"""Acknowledgement latency and throughput of `mureka-etl webhook serve` over loopback.

Starts the receiver as a subprocess on a scratch home, then posts realistic job records (the simulator's corpus)
at a fixed rate from a pool of keep-alive `requests` sessions (open loop: each delivery has its send slot, so a
slow answer cannot hide the queueing it causes), and once as fast as the pool goes (closed loop). Prints p50,
p99 and max acknowledgement latency (from the send; p99_from_slot also counts how late the client sent, which
on a loaded machine is mostly the client's own scheduling) and deliveries/s per run, and checks that every
acknowledged delivery is in the spool.

    .venv/bin/python benchmarks/webhook_bench.py --rates 300 600 --seconds 10

It writes the figures to benchmarks/webhook_results.md (`make bench` rewrites results.md whole).
"""

import argparse
import json
import os
import secrets
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import requests

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "webhook_results.md"
sys.path.insert(0, str(ROOT))

from pipelines.config import Home, utcnow  # noqa: E402
from pipelines.webhook import spool  # noqa: E402
from simulator.corpus import generate_jobs  # noqa: E402


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def start_receiver(home: Path, secret: str, port: int) -> subprocess.Popen:
    env = {**os.environ, "MUREKA_ETL_HOME": str(home), "MUREKA_WEBHOOK_SECRET": secret}
    process = subprocess.Popen(
        [sys.executable, "-m", "cli.main", "webhook", "serve", "--port", str(port)],
        cwd=ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    for _ in range(300):
        try:
            requests.get(f"http://127.0.0.1:{port}/healthz", timeout=1)
            return process
        except requests.ConnectionError:
            time.sleep(0.05)
    raise SystemExit("the receiver did not start")


class Poster:
    """A pool of keep-alive sessions posting bodies and timing each answer."""

    def __init__(self, url: str, workers: int) -> None:
        self.url = url
        self.local = threading.local()
        self.pool = ThreadPoolExecutor(max_workers=workers)

    def post(self, body: bytes, slot: float | None) -> tuple[float, float, int]:
        """The answer's latency from the send and from the delivery's slot (the same in a closed loop)."""
        session = getattr(self.local, "session", None)
        if session is None:
            session = self.local.session = requests.Session()
        if slot is not None:
            delay = slot - time.perf_counter()
            if delay > 0:
                time.sleep(delay)
        sent = time.perf_counter()
        answer = session.post(self.url, data=body, headers={"Content-Type": "application/json"}, timeout=30)
        done = time.perf_counter()
        return done - sent, done - (slot or sent), answer.status_code


def run(poster: Poster, bodies: list[bytes], rate: float | None) -> dict:
    started = time.perf_counter()
    slots = [started + i / rate for i in range(len(bodies))] if rate else [None] * len(bodies)
    results = list(poster.pool.map(poster.post, bodies, slots))
    elapsed = time.perf_counter() - started
    latencies = sorted(latency * 1000 for latency, _, _ in results)
    from_slot = sorted(latency * 1000 for _, latency, _ in results)
    ok = sum(1 for _, _, status in results if status == 200)
    return {
        "target_per_s": rate or "max",
        "deliveries": len(bodies),
        "acknowledged": ok,
        "per_s": round(len(bodies) / elapsed, 1),
        "p50_ms": round(statistics.median(latencies), 2),
        "p99_ms": round(latencies[int(len(latencies) * 0.99) - 1], 2),
        "max_ms": round(latencies[-1], 2),
        "p99_from_slot_ms": round(from_slot[int(len(from_slot) * 0.99) - 1], 2),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rates", type=float, nargs="+", default=[300.0, 600.0], help="deliveries per second")
    parser.add_argument("--seconds", type=float, default=10.0, help="length of each fixed-rate run")
    parser.add_argument("--workers", type=int, default=32, help="concurrent sessions")
    args = parser.parse_args()

    jobs = generate_jobs(2000, 1, utcnow(), days=1)
    records = [json.dumps(job.final_record).encode() for job in jobs]
    secret = secrets.token_hex(24)
    port = free_port()
    with tempfile.TemporaryDirectory(prefix="webhook-bench-") as scratch:
        process = start_receiver(Path(scratch), secret, port)
        try:
            poster = Poster(f"http://127.0.0.1:{port}/hooks/mureka/{secret}", args.workers)
            run(poster, records[:200], None)  # warm-up: connections and the page cache
            acknowledged = 200
            load = " ".join(f"{x:.2f}" for x in os.getloadavg())
            results = []
            for rate in [*args.rates, None]:
                count = int(rate * args.seconds) if rate else 5000
                bodies = [records[i % len(records)] for i in range(count)]
                result = run(poster, bodies, rate)
                acknowledged += result["acknowledged"]
                results.append(result)
                print(json.dumps(result))
        finally:
            process.terminate()
            process.wait(30)
        home = Home(Path(scratch))
        segments = [s for d in spool.spool_days(home) for s in spool.segments(home, d)]
        stored = sum(len(spool.read_segment(s).deliveries) for s in segments)
        mean_bytes = round(statistics.mean(map(len, records)))
        print(json.dumps({"acknowledged_total": acknowledged, "in_spool": stored, "body_bytes_mean": mean_bytes}))
    write_results(results, args, load, mean_bytes, acknowledged, stored)


def write_results(
    results: list[dict], args: argparse.Namespace, load: str, mean_bytes: int, acknowledged: int, stored: int
) -> None:
    """benchmarks/webhook_results.md: the run's settings, machine load and one row per run."""
    lines = [
        "# Webhook receiver: acknowledgement latency and throughput",
        "",
        f"Produced by `.venv/bin/python benchmarks/webhook_bench.py --rates {' '.join(f'{r:g}' for r in args.rates)}"
        f" --seconds {args.seconds:g} --workers {args.workers}` on {utcnow():%Y-%m-%d %H:%M} UTC,"
        f" {os.cpu_count()} cpus, load average {load} at start. The receiver (`mureka-etl webhook serve`, uvicorn"
        " with uvloop and httptools) and the client (keep-alive `requests` sessions in threads) share the machine"
        f" over loopback. Bodies are the simulator's job records ({mean_bytes} bytes on average); each is fsynced"
        " to the spool before its 200.",
        "",
        "| target | deliveries | per second | p50 ms | p99 ms | max ms | p99 from slot ms |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in results:
        lines.append(
            f"| {r['target_per_s']} | {r['deliveries']} | {r['per_s']} | {r['p50_ms']} | {r['p99_ms']} |"
            f" {r['max_ms']} | {r['p99_from_slot_ms']} |"
        )
    lines += [
        "",
        f"Acknowledged {acknowledged} deliveries in all (with a warm-up of 200); {stored} were in the spool.",
        "",
    ]
    RESULTS.write_text("\n".join(lines))


if __name__ == "__main__":
    main()
