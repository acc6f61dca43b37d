"""One ingest of N records with the lake on S3 (moto's S3 server on 127.0.0.1) against the same ingest into a
local lake, each in its own process, runs interleaved; then a query over each lake.

    .venv/bin/python benchmarks/s3_bench.py                # 100,000 records, 3 runs each
    .venv/bin/python benchmarks/s3_bench.py -n 20000 --repeat 1

The ingest writes the raw archive and the lake tables and loads the warehouse (which reads the lake back). moto
keeps objects in its own process, over loopback HTTP: the figures show what the S3 protocol and the round trips
cost, not a real network's latency. The table replaces the "Lake on S3 vs local" section of benchmarks/results.md
(`make bench` rewrites that file whole: run this after it).
"""

import argparse
import json
import os
import resource
import shutil
import socket
import statistics
import subprocess
import sys
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path

import requests

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "benchmarks" / "out"
RESULTS = ROOT / "benchmarks" / "results.md"
SECTION = "## Lake on S3 vs local"
BUCKET = "bench-lake"
AWS = {
    "AWS_ACCESS_KEY_ID": "bench",
    "AWS_SECRET_ACCESS_KEY": "bench-secret",
    "AWS_REGION": "us-east-1",
    "AWS_EC2_METADATA_DISABLED": "true",
}
QUERY = "SELECT count(*), count(DISTINCT jobid), sum(duration_milliseconds) FROM songs"
sys.path.insert(0, str(ROOT))


def stage(n: int, lake_url: str) -> dict:
    """Ingest N records into a fresh home (its lake at `lake_url`, or local for "-"), then run QUERY over the lake."""
    from benchmarks.datagen import records_file
    from pipelines.config import Home
    from pipelines.ingest import ingest
    from pipelines.query import connect_readonly
    from pipelines.storage import lake_storage

    path = records_file(OUT, n)
    url = None if lake_url == "-" else lake_url
    home = Home(OUT / f"home-{'s3' if url else 'local'}-{n}", url)
    shutil.rmtree(home.root, ignore_errors=True)
    started = time.monotonic()
    report = ingest(home, [path])
    seconds = time.monotonic() - started
    assert report.records == n and report.bad_count == 0, (report.records, report.bad_count)
    storage = lake_storage(home)
    files = [file for file in storage.files(storage.root, recursive=True) if file.suffix == ".parquet"]
    stored = sum(storage.info(file).size for file in files)
    started = time.monotonic()
    con = connect_readonly(home)
    con.execute(QUERY).fetchall()
    query_s = time.monotonic() - started
    con.close()
    return {
        "seconds": seconds,
        "peak_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "files": len(files),
        "mb": stored / 1e6,
        "query_s": query_s,
        "rows": report.warehouse.rows_by_table if report.warehouse else {},
    }


def child(n: int, lake_url: str, env: dict[str, str]) -> dict:
    done = subprocess.run(
        [sys.executable, str(Path(__file__).resolve()), "--stage", str(n), lake_url],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
    )
    if done.returncode != 0:
        raise RuntimeError(f"ingest into {lake_url} failed:\n{done.stderr[-4000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def start_moto() -> tuple[subprocess.Popen, str]:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    endpoint = f"http://127.0.0.1:{port}"
    server = subprocess.Popen(
        [str(Path(sys.executable).with_name("moto_server")), "-H", "127.0.0.1", "-p", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    for _ in range(300):
        try:
            requests.get(endpoint, timeout=1)
            return server, endpoint
        except requests.ConnectionError:
            time.sleep(0.1)
    server.kill()
    raise RuntimeError("moto_server did not start")


def summary(runs: list[dict]) -> dict:
    times = sorted(run["seconds"] for run in runs)
    return {
        "median": statistics.median(times),
        "range": f"{times[0]:.1f}-{times[-1]:.1f} s",
        "peak_mb": max(run["peak_mb"] for run in runs),
        "query_s": statistics.median(run["query_s"] for run in runs),
        "files": runs[-1]["files"],
        "mb": runs[-1]["mb"],
    }


def write_section(n: int, repeat: int, local: dict, s3: dict, load: str) -> str:
    lines = [
        SECTION,
        "",
        f"Produced by `benchmarks/s3_bench.py -n {n} --repeat {repeat}`: one ingest of {n:,} records (raw archive,",
        "lake tables, warehouse load), each run in its own process, S3 and local interleaved; then one query over the",
        f"lake through `connect_readonly` (`{QUERY}`).",
        "S3 is moto's server on 127.0.0.1 (loopback, no network). Lake files and MB: the Parquet files stored.",
        f"Machine: {os.cpu_count()} CPUs, load average at start {load}, {datetime.now(UTC):%Y-%m-%d %H:%M} UTC.",
        "",
        "| lake | ingest (median) | rec/s | runs | peak RSS | lake files | lake MB | query |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for name, result in (("local folder", local), ("S3 (moto, loopback)", s3)):
        lines.append(
            f"| {name} | {result['median']:.1f} s | {n / result['median']:,.0f} | {result['range']} |"
            f" {result['peak_mb']:,.0f} MB | {result['files']} | {result['mb']:.1f} |"
            f" {result['query_s'] * 1000:.0f} ms |"
        )
    lines += ["", f"S3 / local ingest time: {s3['median'] / local['median']:.2f}x.", ""]
    section = "\n".join(lines)
    text = RESULTS.read_text(encoding="utf-8") if RESULTS.exists() else ""
    before, _, after = text.partition(SECTION)
    rest = after.partition("\n## ")[2] if after else ""
    RESULTS.write_text(before.rstrip("\n") + "\n\n" + section + ("\n## " + rest if rest else ""), encoding="utf-8")
    return section


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("-n", type=int, default=100_000, help="records to ingest (default 100,000)")
    parser.add_argument("--repeat", type=int, default=3, help="runs of each lake, interleaved (default 3)")
    parser.add_argument("--stage", nargs=2, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.stage:
        print(json.dumps(stage(int(args.stage[0]), args.stage[1])))
        return 0
    from benchmarks.datagen import records_file

    records_file(OUT, args.n)
    load = " ".join(f"{x:.2f}" for x in os.getloadavg())
    server, endpoint = start_moto()
    try:
        env = {**os.environ, **AWS, "AWS_ENDPOINT_URL": endpoint}
        import boto3

        boto3.client("s3", endpoint_url=endpoint, **_boto_credentials()).create_bucket(Bucket=BUCKET)
        local, s3 = [], []
        for run in range(args.repeat):
            local.append(child(args.n, "-", env))
            s3.append(child(args.n, f"s3://{BUCKET}/run-{run}-{uuid.uuid4().hex[:8]}", env))
            print(f"run {run + 1}: local {local[-1]['seconds']:.1f} s, s3 {s3[-1]['seconds']:.1f} s", flush=True)
        assert all(run["rows"] == local[0]["rows"] for run in local + s3), "the lakes differ"
    finally:
        server.terminate()
        server.wait()
    print(write_section(args.n, args.repeat, summary(local), summary(s3), load))
    return 0


def _boto_credentials() -> dict[str, str]:
    return {
        "aws_access_key_id": AWS["AWS_ACCESS_KEY_ID"],
        "aws_secret_access_key": AWS["AWS_SECRET_ACCESS_KEY"],
        "region_name": AWS["AWS_REGION"],
    }


if __name__ == "__main__":
    raise SystemExit(main())
