"""Capture throughput of 1, 2 and 4 concurrent capture workers sharing one registry, against the simulator with
100 ms latency per answer.

Each worker is its own process with its own API client (`--concurrency` requests in flight) and loops
`fetch_due(limit=--chunk)` until no id is left for it, as N capture runs of one day would. Workers claim with
row locks that skip each other's rows (Postgres: FOR UPDATE SKIP LOCKED; SQLite: one short write transaction),
so the work is latency-bound and should scale linearly. Per run it counts duplicate fetches (GETs of an id beyond
its first, from the simulator's request log) and lost jobs (ids left unfetched or not final), both must be 0.

    .venv/bin/python benchmarks/scale_bench.py                      # Postgres (a throwaway cluster) and SQLite
    .venv/bin/python benchmarks/scale_bench.py --engines postgres --jobs 400

It writes its table to the "Scale-out" section of benchmarks/results.md (`make bench` rewrites that file whole:
run this afterwards).
"""

import argparse
import multiprocessing
import os
import platform
import shutil
import statistics
import sys
import tempfile
import time
from collections import Counter
from contextlib import ExitStack
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results.md"
SECTION = "## Scale-out: concurrent capture workers"
sys.path.insert(0, str(ROOT))

from pipelines import lake  # noqa: E402
from pipelines.client import MurekaClient  # noqa: E402
from pipelines.config import Home, utcnow  # noqa: E402
from pipelines.fetch import fetch_due  # noqa: E402
from pipelines.jobids import parse_jobid  # noqa: E402
from pipelines.registry import open_registry  # noqa: E402
from simulator.corpus import generate_jobs  # noqa: E402
from simulator.server import FaultConfig, Simulator  # noqa: E402

TOKEN_ENV = "USEAPI_TOKEN"
LINEAR_TARGET = 0.9


@dataclass(frozen=True)
class Run:
    """One measured run: how many workers fetched how many ids in how long, and what went wrong."""

    engine: str
    workers: int
    jobs: int
    seconds: float
    requests: int
    duplicates: int
    lost: int

    @property
    def per_s(self) -> float:
        return self.jobs / self.seconds


def worker(root: str, url: str | None, base_url: str, chunk: int, concurrency: int, start, done) -> None:  # noqa: ANN001
    """A capture worker: open the registry and a client, wait for the start, fetch chunks until none is left;
    hands back how many ids it claimed."""
    home = Home(Path(root), registry_url=url)
    with open_registry(home) as registry, MurekaClient(base_url, os.environ[TOKEN_ENV], concurrency=concurrency) as api:
        start.wait()
        fetched = 0
        while True:
            report = fetch_due(home, registry, api, now=utcnow, limit=chunk)
            if not report.requested:
                break
            fetched += report.requested
    done.put(fetched)


def measure(engine: str, url: str | None, workers: int, args: argparse.Namespace, scratch: Path) -> Run:
    """Register a fresh corpus in a fresh home (and database), run `workers` workers over it, check the ends."""
    corpus = generate_jobs(args.jobs, 41, utcnow() - timedelta(hours=1), days=3)
    home = Home(scratch / f"{engine}-{workers}", registry_url=url).ensure()
    now = utcnow()
    with open_registry(home) as registry:
        registry.add([parse_jobid(job.jobid, now) for job in corpus], "bench", now)
    ctx = multiprocessing.get_context("spawn")
    with Simulator(corpus, seed=7, faults=FaultConfig(latency_ms=args.latency_ms)) as sim:
        os.environ[TOKEN_ENV] = sim.token
        start, done = ctx.Barrier(workers + 1), ctx.Queue()
        procs = [
            ctx.Process(
                target=worker, args=(str(home.root), url, sim.base_url, args.chunk, args.concurrency, start, done)
            )
            for _ in range(workers)
        ]
        for proc in procs:
            proc.start()
        start.wait()  # every worker is up and connected: the clock starts
        started = time.monotonic()
        for _ in procs:
            done.get(timeout=600)
        seconds = time.monotonic() - started
        for proc in procs:
            proc.join(timeout=60)
        if any(proc.exitcode != 0 for proc in procs):
            raise SystemExit(f"{engine}: a worker failed: exit codes {[p.exitcode for p in procs]}")
        by_jobid = sim.requests_by_jobid
    with open_registry(home) as registry:
        states = registry.count_by_state()
        stored = Counter(
            jobid for day in registry.days() for jobid in lake.read_raw(home, day).column("jobid").to_pylist()
        )
    expected = {job.jobid for job in corpus}
    unfetched = expected - set(stored)
    lost = len(unfetched) + states["new"] + states["active"] + states["lost"]
    duplicates = sum(count - 1 for count in by_jobid.values() if count > 1)
    return Run(engine, workers, len(corpus), seconds, sum(by_jobid.values()), duplicates, lost)


def table(runs: list[Run]) -> list[str]:
    lines = [
        "| registry | workers | jobs | seconds | jobs/s | x 1 worker | linear share | duplicate fetches | lost jobs |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for run in runs:
        base = next(r for r in runs if r.engine == run.engine and r.workers == 1)
        speedup = run.per_s / base.per_s
        share = speedup / run.workers
        lines.append(
            f"| {run.engine} | {run.workers} | {run.jobs:,} | {run.seconds:.1f} | {run.per_s:.1f} | {speedup:.2f}"
            f" | {share:.2f} {'ok' if share >= LINEAR_TARGET else 'BELOW'} | {run.duplicates} | {run.lost} |"
        )
    return lines


def write_section(lines: list[str], args: argparse.Namespace, load: tuple[float, float, float]) -> None:
    """Replace (or add) this benchmark's section of results.md, leaving the rest of the file as it is."""
    section = [
        SECTION,
        "",
        f"Produced by `benchmarks/scale_bench.py` on {datetime.now(UTC):%Y-%m-%d %H:%M} UTC ({os.cpu_count()} cpus,"
        f" load average at start {' '.join(f'{x:.2f}' for x in load)}, python {platform.python_version()}).",
        f"{args.jobs:,} settled jobs per run, {args.latency_ms:g} ms simulator latency per answer; each worker is a"
        f" process with {args.concurrency} requests in flight, claiming {args.chunk} ids at a time until none is left;"
        f" each row is the median of {args.repeat} run(s).",
        f"Linear share = (throughput / 1-worker throughput) / workers; target >= {LINEAR_TARGET}. Duplicate fetches"
        " count GETs of an id beyond its first (simulator request log); lost jobs count ids left unfetched or not"
        " final. Both must be 0.",
        "",
        *lines,
        "",
    ]
    text = RESULTS.read_text(encoding="utf-8") if RESULTS.exists() else "# mureka-etl benchmark results\n"
    before, found, after = text.partition(SECTION)
    rest = after[after.find("\n## ") + 1 :] if found and "\n## " in after else ""
    RESULTS.write_text(before.rstrip("\n") + "\n\n" + "\n".join(section) + ("\n" + rest if rest else ""), "utf-8")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--engines", nargs="+", choices=["postgres", "sqlite"], default=["postgres", "sqlite"])
    parser.add_argument("--workers", nargs="+", type=int, default=[1, 2, 4])
    parser.add_argument("--jobs", type=int, default=1600)
    parser.add_argument("--latency-ms", type=float, default=100.0)
    parser.add_argument("--concurrency", type=int, default=4, help="requests in flight per worker")
    parser.add_argument("--chunk", type=int, default=80, help="ids a worker claims at a time")
    parser.add_argument("--repeat", type=int, default=1, help="runs per row; the median time is kept")
    parser.add_argument("--no-write", action="store_true", help="print the table only")
    args = parser.parse_args()
    if 1 not in args.workers:
        parser.error("--workers must include 1 (the baseline)")
    load = os.getloadavg()
    runs: list[Run] = []
    scratch = Path(tempfile.mkdtemp(prefix="mureka-scale-"))
    try:
        with ExitStack() as stack:
            for engine in args.engines:
                cluster = None
                if engine == "postgres":
                    from tests.postgres_server import postgres_cluster_running

                    cluster = stack.enter_context(postgres_cluster_running())
                for workers in sorted(args.workers):
                    tries = []
                    for attempt in range(args.repeat):
                        url = cluster.create_database(f"bench_{workers}_{attempt}") if cluster else None
                        tries.append(measure(engine, url, workers, args, scratch / str(attempt)))
                    run = sorted(tries, key=lambda r: r.seconds)[len(tries) // 2]
                    runs.append(
                        Run(
                            engine,
                            workers,
                            run.jobs,
                            statistics.median(r.seconds for r in tries),
                            run.requests,
                            max(r.duplicates for r in tries),
                            max(r.lost for r in tries),
                        )
                    )
                    print(f"{engine}: {workers} worker(s): {run.per_s:.1f} jobs/s", flush=True)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    lines = table(runs)
    print("\n".join(lines))
    if not args.no_write:
        write_section(lines, args, load)
        print(f"written to {RESULTS}")
    bad = [r for r in runs if r.duplicates or r.lost]
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
