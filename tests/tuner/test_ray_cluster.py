"""A real multi-node Ray cluster: `ray start --head` and a second `ray start --address` node
on this machine, `paretune tune` pointed at it with RAY_ADDRESS, and a job whose trials run
on both nodes (each trial records its Ray node id).

Everything runs in fresh network and PID namespaces (``unshare``): the only interface is
loopback, so no traffic can go anywhere but 127.0.0.1 (a worker `ray start` needs Ray's
cluster switch on, and with it Ray would otherwise advertise the machine's address), and the
kernel ends every Ray process when the namespace ends, whatever happens to the test.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from results.db import make_engine
from results.db import make_session_factory
from results.db import session_scope
from results.repository import JobRepository
from tests.api.conftest import free_port
from tests.tuner.test_worker_death import PINNED

pytestmark = [pytest.mark.ray, pytest.mark.slow]
HERE = Path(__file__).parent
UNSHARE = ["unshare", "--net", "--pid", "--fork", "--mount-proc", "--kill-child"]


def namespaces_available() -> str | None:
    if shutil.which("unshare") is None or shutil.which("ip") is None:
        return "needs unshare and ip (util-linux, iproute2)"
    probe = subprocess.run([*UNSHARE, "true"], capture_output=True, text=True, timeout=30)
    if probe.returncode != 0:
        return f"cannot create namespaces here: {probe.stderr.strip()}"
    return None


@pytest.fixture
def work() -> Iterator[Path]:
    """A short private directory (Ray's socket paths must stay under 107 characters)."""
    path = Path(tempfile.mkdtemp(prefix="pt-ray-", dir="/tmp"))
    yield path
    shutil.rmtree(path, ignore_errors=True)


def run_cluster(work: Path, spec: Path) -> None:
    cmd = [
        *UNSHARE,
        "bash",
        str(HERE / "two_node_cluster.sh"),
        str(work),
        str(free_port()),
        str(spec),
    ]
    proc = subprocess.Popen(cmd, start_new_session=True)
    try:
        code = proc.wait(timeout=300)
    finally:
        if proc.poll() is None:  # killing unshare kills the namespace, and Ray with it
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(30)
    logs = {p.name: p.read_text()[-3000:] for p in work.glob("*.log")}
    assert code == 0, f"cluster script failed ({code}): {json.dumps(logs, indent=1)}"


def ray_processes_of(work: Path) -> list[int]:
    """Processes whose command line names this test's Ray directory (none may survive)."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                cmdline = (entry / "cmdline").read_bytes()
            except OSError:
                continue
            if str(work).encode() in cmdline:
                found.append(int(entry.name))
    return found


def test_trials_land_on_both_nodes_of_a_loopback_cluster(work: Path) -> None:
    if reason := namespaces_available():
        pytest.skip(reason)
    script = HERE / "fault_trial.py"
    spec = {
        "name": "two-node",
        "model": "llama-3.1-8b",
        "cluster": {"gpu": "h100-sxm-80gb", "num_gpus": 16},
        "workload": {"seq_len": 4096, "global_batch_size": 256},
        "space": {"tp": [1, 2, 4, 8], **PINNED},
        "evaluator": {
            "type": "command",
            "command": f"{sys.executable} {script} --tp {{tp}} --state-dir {work} --sleep-s 2",
            "timeout_s": 120,
        },
    }
    (work / "spec.json").write_text(json.dumps(spec))
    run_cluster(work, work / "spec.json")
    assert ray_processes_of(work) == [], "Ray processes outlived the test"

    cluster = json.loads((work / "cluster.json").read_text())
    assert [n["address"] for n in cluster["nodes"]] == ["127.0.0.1", "127.0.0.1"]
    assert all(n["alive"] for n in cluster["nodes"])
    assert cluster["gcs"].startswith("127.0.0.1:"), cluster["gcs"]
    assert "inet " in cluster["interfaces"] and "192." not in cluster["interfaces"]

    engine = make_engine(f"sqlite:///{work / 'jobs.db'}")
    with session_scope(make_session_factory(engine)) as session:
        repo = JobRepository(session)
        (job,) = repo.list_jobs()
        trials = repo.all_trials(job.id)
    engine.dispose()
    assert job.status == "succeeded" and len(trials) == 4
    assert all(t.state == "complete" for t in trials), [t.error for t in trials]
    used = {t.details["ray_node_id"] for t in trials}
    assert used == {n["id"] for n in cluster["nodes"]}, "trials ran on both nodes"
