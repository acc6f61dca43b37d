"""`make bench`: every stage of mureka-etl measured in its own process; prints a table, writes results.md.

    .venv/bin/python benchmarks/run.py            # ingest 100k and 1M (+ DuckDB reference), fetch 20k, views
    .venv/bin/python benchmarks/run.py --quick    # the same at a smoke-test size
    .venv/bin/python benchmarks/run.py --repeat 1 # one run per ingest size instead of the median of three
    .venv/bin/python benchmarks/run.py --fetch    # only the fetch figures (20k jobs at 0 and 100 ms), printed

Generated data and homes live in benchmarks/out/ (gitignored); the record files are reused between runs.
"""

import argparse
import json
import os
import platform
import resource
import shutil
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

from pipelines.settings import Settings

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "benchmarks" / "out"
RESULTS = ROOT / "benchmarks" / "results.md"
# The heading of results.md's hand-written part: a rewrite keeps it and everything after it.
KEPT_SECTION = "## Figures behind design choices"
sys.path.insert(0, str(ROOT))


def _peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


# --- stages (each runs in a child process: `run.py --stage NAME ARGS...`) -------------------------


def stage_ingest(n: int) -> dict:
    from benchmarks.datagen import records_file
    from pipelines.config import Home
    from pipelines.ingest import ingest

    path = records_file(OUT, n)
    home = Home(OUT / f"home-{n}")
    shutil.rmtree(home.root, ignore_errors=True)
    started = time.monotonic()
    report = ingest(home, [path])
    seconds = time.monotonic() - started
    assert report.records == n and report.bad_count == 0, (report.records, report.bad_count)
    return {
        "records": n,
        "seconds": seconds,
        "per_s": n / seconds,
        "peak_mb": _peak_mb(),
        "rows": report.warehouse.rows_by_table if report.warehouse else {},
    }


def stage_reference(n: int) -> dict:
    import duckdb

    from benchmarks.datagen import records_file

    path = records_file(OUT, n)
    out = OUT / f"reference-{n}"
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir(parents=True)
    sql = (ROOT / "benchmarks" / "reference.sql").read_text().replace("{file}", str(path)).replace("{out}", str(out))
    con = duckdb.connect(str(out / "reference.duckdb"))
    con.execute("SET enable_progress_bar = false")
    started = time.monotonic()
    con.execute(sql)
    seconds = time.monotonic() - started
    con.close()
    return {"records": n, "seconds": seconds, "per_s": n / seconds, "peak_mb": _peak_mb()}


def stage_fetch(jobs: int, latency_ms: float, concurrency: int) -> dict:
    from pipelines.client import MurekaClient
    from pipelines.config import Home, utcnow
    from pipelines.fetch import fetch_due
    from pipelines.jobids import parse_jobid
    from pipelines.registry import Registry
    from simulator.server import DEFAULT_TOKEN

    home = Home(OUT / f"fetch-{jobs}-{int(latency_ms)}")
    shutil.rmtree(home.root, ignore_errors=True)
    home.ensure()
    ids_file = home.root / "ids.txt"
    server = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "simulator.server",
            "--port",
            "0",
            "--jobs",
            str(jobs),
            "--days",
            "6",
            "--latency-ms",
            str(latency_ms),
            "--ids-out",
            str(ids_file),
        ],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        base_url = _simulator_url(server)
        now = utcnow()
        with Registry(home.registry_path) as registry:
            ids = [parse_jobid(line, now) for line in ids_file.read_text().split()]
            registry.add(ids, source="bench", now=now)
            with MurekaClient(base_url, DEFAULT_TOKEN, concurrency=concurrency) as client:
                report = fetch_due(home, registry, client, now=utcnow)
    finally:
        server.terminate()
        server.wait()
    answered = report.requested - report.by_outcome["deferred"]
    ideal = concurrency / (latency_ms / 1000) if latency_ms else None
    return {
        "jobs": answered,
        "seconds": report.seconds,
        "per_s": report.jobs_per_second(),
        "ideal": ideal,
        "requests": report.http_requests,
        "outcomes": dict(report.by_outcome),
    }


def _simulator_url(server: subprocess.Popen) -> str:
    assert server.stdout is not None
    for line in server.stdout:
        if "export USEAPI_BASE_URL=" in line:
            return line.split("=", 1)[1].strip()
    raise RuntimeError("the simulator did not start")


def stage_nothing_due(n: int) -> dict:
    from assets.resources import MurekaApiResource
    from assets.runner import run_capture
    from pipelines.config import Home
    from simulator.server import Simulator

    home = Home(OUT / f"home-{n}")
    files = {p: p.stat().st_mtime_ns for p in home.lake.rglob("*.parquet")}
    with Simulator([]) as sim:
        started = time.monotonic()
        run = run_capture(home, MurekaApiResource(base_url=sim.base_url, token=sim.token), settings=Settings.from_env())
        seconds = time.monotonic() - started
        requests = sim.requests_total
    changed = sum(1 for p, mtime in files.items() if p.stat().st_mtime_ns != mtime)
    return {
        "seconds": seconds,
        "requests": requests,
        "days": len(run.days),
        "files": len(files),
        "files_changed": changed,
    }


def stage_views(n: int) -> dict:
    import duckdb

    home_db = OUT / f"home-{n}" / "warehouse.duckdb"
    con = duckdb.connect(str(home_db), read_only=True)
    views = [
        name
        for (name,) in con.execute(
            "SELECT view_name FROM duckdb_views() WHERE NOT internal AND schema_name = 'main' ORDER BY view_name"
        ).fetchall()
    ]
    timings = {}
    for view in views:
        best = float("inf")
        for _ in range(3):
            started = time.perf_counter()
            rows = con.sql(f"SELECT * FROM {view}").to_arrow_table().num_rows
            best = min(best, time.perf_counter() - started)
        timings[view] = {"ms": best * 1000, "rows": rows}
    con.close()
    return {"jobs": n, "views": timings}


STAGES = {
    "ingest": stage_ingest,
    "reference": stage_reference,
    "fetch": stage_fetch,
    "nothing_due": stage_nothing_due,
    "views": stage_views,
}


def _child(name: str, *args: object) -> dict:
    """Run one stage in a fresh interpreter and return its JSON result (the process's wall time included)."""
    started = time.monotonic()
    done = subprocess.run(
        [sys.executable, str(Path(__file__).resolve()), "--stage", name, *map(str, args)],
        cwd=ROOT,
        capture_output=True,
        text=True,
    )
    if done.returncode != 0:
        raise RuntimeError(f"stage {name} {args} failed:\n{done.stderr[-4000:]}")
    result = json.loads(done.stdout.strip().splitlines()[-1])
    result["process_s"] = time.monotonic() - started
    return result


def _median_seconds(runs: list[dict]) -> float:
    return statistics.median(run["seconds"] for run in runs)


def _spread(runs: list[dict]) -> str:
    """The median run time and, over several runs, their range: "median 88.1 s, runs 86.0-93.4 s"."""
    times = sorted(run["seconds"] for run in runs)
    median = f"{statistics.median(times):.1f} s"
    return median if len(times) == 1 else f"median {median}, runs {times[0]:.1f}-{times[-1]:.1f} s"


# --- the report ---------------------------------------------------------------------------------


def machine() -> dict[str, str]:
    import duckdb
    import pyarrow
    import requests

    cpu = next(
        (
            line.split(":", 1)[1].strip()
            for line in Path("/proc/cpuinfo").read_text().splitlines()
            if line.startswith("model name")
        ),
        platform.processor(),
    )
    mem_kb = next(
        int(line.split()[1]) for line in Path("/proc/meminfo").read_text().splitlines() if line.startswith("MemTotal")
    )
    return {
        "cpus": str(os.cpu_count()),
        "cpu": cpu,
        "memory": f"{mem_kb / 1024 / 1024:.1f} GiB",
        "os": f"{platform.system()} {platform.release()}",
        "python": platform.python_version(),
        "duckdb": duckdb.__version__,
        "pyarrow": pyarrow.__version__,
        "requests": requests.__version__,
        "load average at start": " ".join(f"{x:.2f}" for x in os.getloadavg()),
        "date": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="small sizes: a smoke run of every stage")
    parser.add_argument(
        "--repeat",
        type=int,
        default=3,
        help="runs of each ingest and reference size, interleaved; medians count (default 3)",
    )
    parser.add_argument("--fetch", action="store_true", help="only the fetch figures, printed (results.md unchanged)")
    parser.add_argument("--stage", help=argparse.SUPPRESS)
    parser.add_argument("args", nargs="*", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.stage:
        values = [float(a) if "." in a else int(a) for a in args.args]
        print(json.dumps(STAGES[args.stage](*values)))
        return 0

    sizes = (10_000, 50_000) if args.quick else (100_000, 1_000_000)
    fetch_jobs = (2_000, 1_000) if args.quick else (20_000, 20_000)
    concurrency = 16
    info = machine()
    rows: list[tuple[str, str, str]] = []

    def add(stage: str, value: str, target: str) -> None:
        rows.append((stage, value, target))
        print(f"{stage:<48} {value:<44} {target}", flush=True)

    if args.fetch:
        _fetch_figures(fetch_jobs, concurrency, add)
        return 0

    from benchmarks.datagen import records_file

    for n in sizes:
        records_file(OUT, n)
    for n in sizes:
        # Interleaved, so that a slow spell of the host weighs on both sides; the medians are compared.
        ours, ref = [], []
        for _ in range(args.repeat):
            ours.append(_child("ingest", n))
            ref.append(_child("reference", n))
        ours_s, ref_s = _median_seconds(ours), _median_seconds(ref)
        add(
            f"ingest {n:,} records (lake + warehouse)",
            f"{n / ours_s:,.0f} rec/s ({_spread(ours)}), peak {max(r['peak_mb'] for r in ours):,.0f} MB",
            f"{ref_s / ours_s:.2f}x reference (must >= 0.5x, aim 0.8x); RSS must <= 1.5 GB",
        )
        add(
            f"  DuckDB SQL reference {n:,} (read_json+UNNEST)",
            f"{n / ref_s:,.0f} rec/s ({_spread(ref)}), peak {max(r['peak_mb'] for r in ref):,.0f} MB",
            "",
        )
    _fetch_figures(fetch_jobs, concurrency, add)
    idle = _child("nothing_due", sizes[-1])
    add(
        f"run with nothing due ({sizes[-1]:,}-job home)",
        f"{idle['seconds']:.2f} s in-process ({idle['process_s']:.1f} s with start), {idle['requests']} requests,"
        f" {idle['files_changed']}/{idle['files']} lake files changed",
        "0 requests, <= 3 s beyond start",
    )
    views = _child("views", sizes[-1])
    for view, timing in views["views"].items():
        add(
            f"view {view} ({sizes[-1]:,} jobs)",
            f"{timing['ms']:.0f} ms ({timing['rows']:,} rows)",
            "< 1 s (aim 200 ms)",
        )

    _write_results(info, rows, args.quick, args.repeat)
    print(f"\nwrote {RESULTS.relative_to(ROOT)}")
    return 0


def _fetch_figures(fetch_jobs: tuple[int, int], concurrency: int, add: Callable[[str, str, str], None]) -> None:
    """The fetch stage at 0 ms and at 100 ms of server latency."""
    for jobs, latency in ((fetch_jobs[0], 0), (fetch_jobs[1], 100)):
        fetched = _child("fetch", jobs, float(latency), concurrency)
        ideal = fetched["ideal"]
        target = ">= 300 jobs/s (aim 600)" if not latency else f">= {0.8 * ideal:.0f} jobs/s (0.8 x {ideal:.0f})"
        add(
            f"fetch {fetched['jobs']:,} jobs, {latency} ms latency, c={concurrency}",
            f"{fetched['per_s']:,.0f} jobs/s ({fetched['seconds']:.1f} s, {fetched['requests']:,} requests)",
            target,
        )


def _write_results(info: dict[str, str], rows: list[tuple[str, str, str]], quick: bool, repeat: int) -> None:
    command = "make bench" + (" (benchmarks/run.py --quick)" if quick else " (benchmarks/run.py)")
    lines = [
        "# mureka-etl benchmark results",
        "",
        f"Produced by `{command}`. Each stage ran in its own process; record files are seeded",
        "(benchmarks/datagen.py: the simulator's corpus at 100,000 jobs a day from 2025-01-01).",
        f"Ingest and its DuckDB reference ran {repeat} time(s) each per size, interleaved; rates and ratios are",
        "of the median times (this VM's speed drifts by 10% or more between runs minutes apart).",
        "",
        "## Machine",
        "",
        *(f"- {key}: {value}" for key, value in info.items()),
        "",
        "## Results",
        "",
        "| stage | result | target |",
        "|---|---|---|",
        *(f"| {stage.strip()} | {value} | {target} |" for stage, value, target in rows),
        "",
    ]
    RESULTS.write_text("\n".join(lines) + _kept_section(), encoding="utf-8")


def _kept_section() -> str:
    """The hand-written section of results.md (figures behind design choices), carried over by every rewrite."""
    text = RESULTS.read_text(encoding="utf-8") if RESULTS.exists() else ""
    at = text.find(KEPT_SECTION)
    return "\n" + text[at:] if at >= 0 else ""


if __name__ == "__main__":
    raise SystemExit(main())
