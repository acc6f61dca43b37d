"""Fault injection for crash tests: `crashpoint(name)` SIGKILLs this process when the test asks for it.

Set `MUREKA_ETL_CRASH_AT=<name>` (or `<name>:<n>` for the n-th time the point is reached) in a
subprocess's environment; unset, a crash point costs one dictionary lookup. SIGKILL, unlike an
exception or SIGTERM, runs no `finally` block, no atexit handler and flushes nothing: what a power
cut or the OOM killer would leave behind.

Points: `fetch_answer` (an answer received, its chunk not yet archived), `raw_written` (a raw batch
renamed into place, its outcomes not yet recorded), `registry_recorded` (outcomes recorded, nothing
flattened yet), `lake_temp_written` (a Parquet temp file written, not yet renamed), `lake_file_replaced`
(a lake file renamed into place), `warehouse_insert` (a table-day inserted, the load not committed).
"""

import os
import signal
import threading
from collections import Counter

ENV_VAR = "MUREKA_ETL_CRASH_AT"

_hits: Counter[str] = Counter()
_lock = threading.Lock()


def crashpoint(name: str) -> None:
    """SIGKILL this process if `MUREKA_ETL_CRASH_AT` names this point (and this is its n-th hit)."""
    wanted = os.environ.get(ENV_VAR)
    if not wanted or wanted.partition(":")[0] != name:
        return
    target = int(wanted.partition(":")[2] or 1)
    with _lock:
        _hits[name] += 1
        if _hits[name] == target:
            os.kill(os.getpid(), signal.SIGKILL)
