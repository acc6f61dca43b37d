"""Seeded synthetic job records for the benchmark: the simulator's corpus as NDJSON, faithful to the API reference.

Records are the final `GET /jobs/{jobid}` answers of `generate_jobs`, created at a steady 100,000 jobs a day
from 2025-01-01 on (history older than the 7-day window, as a user's saved records would be). Generation is
cut into chunks with their own seeds, so two worker processes produce the file and the result does not depend
on how many run. A file, once written, is reused (its name carries N and the seed).
"""

import json
import os
from concurrent.futures import ProcessPoolExecutor
from datetime import UTC, datetime, timedelta
from pathlib import Path

from simulator.corpus import generate_jobs

JOBS_PER_DAY = 100_000
START = datetime(2025, 1, 1, tzinfo=UTC)
CHUNK = 20_000


def _chunk(args: tuple[int, int, int]) -> str:
    """The NDJSON text of chunk `index` (`size` jobs), created in that chunk's own slice of time."""
    seed, index, size = args
    span_days = CHUNK / JOBS_PER_DAY
    end = START + timedelta(days=span_days * (index + 1))
    jobs = generate_jobs(size, seed * 100_003 + index, end, days=span_days)
    return "".join(json.dumps(job.final_record, separators=(",", ":")) + "\n" for job in jobs)


def records_file(out: Path, n: int, seed: int = 7, workers: int | None = None) -> Path:
    """`out/records-<n>-s<seed>.jsonl`, generated first if it does not exist yet."""
    path = out / f"records-{n}-s{seed}.jsonl"
    if path.exists():
        return path
    out.mkdir(parents=True, exist_ok=True)
    temp = path.with_suffix(".tmp")
    chunks = [(seed, i, min(CHUNK, n - i * CHUNK)) for i in range((n + CHUNK - 1) // CHUNK)]
    with open(temp, "w", encoding="utf-8") as handle, ProcessPoolExecutor(workers or os.cpu_count() or 2) as pool:
        for text in pool.map(_chunk, chunks):
            handle.write(text)
    os.replace(temp, path)
    return path
