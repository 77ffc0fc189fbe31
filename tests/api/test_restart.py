"""Resume after a crash: the server is killed mid-job and started again on the same
database; the job continues from its stored trials and ends with each trial stored once."""

from __future__ import annotations

import signal
import time
from pathlib import Path

import httpx
import pytest

from tests.api.conftest import SMALL_SPEC
from tests.api.conftest import start_server
from tests.api.conftest import stop_server

pytestmark = pytest.mark.slow
# The restarted server requeues the job once its heartbeat is 3 s old (30 s by default).
QUICK_SWEEP = {"PARETUNE_HEARTBEAT_S": "0.5", "PARETUNE_STALE_JOB_AFTER_S": "3"}


def test_killed_server_resumes_the_job(tmp_path: Path) -> None:
    spec = {
        **SMALL_SPEC,
        "space": None,
        "budget": {"trials": 400, "batch_size": 8, "exhaustive_limit": 0},
    }
    server = start_server(tmp_path, executor="local", extra_env=QUICK_SWEEP)
    try:
        job = server.submit(spec)
        deadline = time.monotonic() + 120
        done = 0
        while done < 80 and time.monotonic() < deadline:
            done = httpx.get(f"{server.url}/v1/jobs/{job['id']}").json()["trials_done"]
            time.sleep(0.05)
        assert 80 <= done < 400, f"the job should be mid-way, has {done} trials"
    finally:
        server.process.send_signal(signal.SIGKILL)
        server.process.wait(10)
    again = start_server(tmp_path, executor="local", extra_env=QUICK_SWEEP)
    try:
        final = again.wait(job["id"], timeout_s=300)
        assert final["status"] == "succeeded", again.log()
        trials = []
        after = -1
        while True:
            page = httpx.get(
                f"{again.url}/v1/jobs/{job['id']}/trials", params={"after": after, "limit": 1000}
            ).json()["items"]
            if not page:
                break
            trials += page
            after = page[-1]["number"]
        numbers = [t["number"] for t in trials]
        keys = [t["config_key"] for t in trials]
        assert len(numbers) == len(set(numbers)) == final["trials_done"]
        assert len(keys) == len(set(keys)), "no configuration evaluated twice"
        assert final["trials_done"] == 400
        assert numbers == list(range(len(numbers)))
    finally:
        stop_server(again)
