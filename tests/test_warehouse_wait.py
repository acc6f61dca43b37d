"""The load waits for an outside process holding the warehouse file, and goes through once it lets go."""

import logging
import subprocess
import sys
import threading

import pytest

from pipelines import lake
from pipelines.config import Home
from pipelines.warehouse import Warehouse
from tests.test_flatten import DAY, raw_rows
from tests.test_lake import with_day
from tests.test_warehouse import FULL, HOLDER


def test_a_load_waits_for_the_file_and_loads_once_the_holder_lets_go(
    tmp_path, caplog: pytest.LogCaptureFixture
) -> None:
    home = Home(tmp_path).ensure()
    lake.write_raw_batch(home, "b01", with_day(raw_rows({"b01"})))
    lake.write_raw_batch(home, "b02", with_day(raw_rows({"b02"})))
    lake.apply_pending(home, DAY)
    Warehouse(home.warehouse_path).load_changed(home)
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLDER, "duckdb", str(home.warehouse_path)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert holder.stdout is not None and holder.stdin is not None
    assert holder.stdout.readline().strip() == "ready"
    released = threading.Timer(1.0, holder.stdin.close)
    released.start()
    try:
        with caplog.at_level(logging.INFO, logger="pipelines.warehouse"):
            result = Warehouse(home.warehouse_path, lock_timeout=30).load_changed(home)
    finally:
        released.join()
        holder.wait(timeout=30)
    assert result.rows_by_table == FULL
    waits = [r.getMessage() for r in caplog.records if "locked by another process" in r.getMessage()]
    assert waits and all("trying again in" in message for message in waits)
