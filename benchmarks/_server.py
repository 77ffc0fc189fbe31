"""A `paretune serve` process on a free 127.0.0.1 port with a database of its own, for the
benchmarks (the same way a user starts one)."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path
from types import TracebackType

import httpx


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Server:
    """``with Server(workdir, executor) as server:`` runs it; ``server.url`` is its base URL."""

    def __init__(
        self,
        workdir: Path,
        executor: str = "ray",
        db_url: str | None = None,
        runner: str = "process",
        http: str = "auto",
    ) -> None:
        self.workdir = workdir
        self.executor = executor
        self.runner = runner  # `serve --runner`: process (the default), embedded or none
        self.http = http  # `serve --http`: auto (httptools + uvloop) or h11 (pure Python)
        self.db_url = db_url or f"sqlite:///{workdir / 'paretune.db'}"
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = workdir / "server.log"
        self.process: subprocess.Popen[bytes] | None = None

    def __enter__(self) -> Server:
        cmd = [sys.executable, "-m", "tuner.cli", "serve", "--port", str(self.port)]
        cmd += ["--db", self.db_url, "--executor", self.executor]
        if self.runner != "process":  # the default (and servers before it had no --runner)
            cmd += ["--runner", self.runner]
        if self.http != "auto":
            cmd += ["--http", self.http]
        env = {**os.environ, "RAY_USAGE_STATS_ENABLED": "0"}
        with self.log_path.open("wb") as log:
            self.process = subprocess.Popen(
                cmd, stdout=log, stderr=subprocess.STDOUT, env=env, cwd=self.workdir
            )
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"server exited:\n{self.log_path.read_text()[-3000:]}")
            if f"running on {self.url}" in self.log_path.read_text():
                return self
            time.sleep(0.2)
        self.__exit__(None, None, None)
        raise RuntimeError("server did not start in 90 s")

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(10)

    @property
    def pid(self) -> int:
        """The server (API) process's id."""
        if self.process is None:
            raise RuntimeError("the server is not started")
        return self.process.pid

    def submit(self, spec: dict[str, object]) -> str:
        resp = httpx.post(f"{self.url}/v1/jobs", json=spec, timeout=60)
        resp.raise_for_status()
        job_id: str = resp.json()["id"]
        return job_id

    def job(self, job_id: str) -> dict[str, object]:
        job: dict[str, object] = httpx.get(f"{self.url}/v1/jobs/{job_id}", timeout=30).json()
        return job

    def wait(self, job_id: str, timeout_s: float = 300) -> dict[str, object]:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            job = self.job(job_id)
            if job["status"] in ("succeeded", "failed", "cancelled"):
                return job
            time.sleep(0.3)
        raise RuntimeError(f"job {job_id} did not finish in {timeout_s} s")
