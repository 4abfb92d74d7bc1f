"""`civicmesh serve` in a child process, for tests where the gateway must be able to die (SIGBUS,
kill -9) without taking the test process with it."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx

from meshcore.settings import Settings
from tests.pg import free_port


class Gateway:
    """`civicmesh serve` in a child process over `settings`' home and store."""

    def __init__(self, settings: Settings, log_path: Path, env: dict[str, str] | None = None) -> None:
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.log_path = log_path
        env = {
            **os.environ,
            "CIVICMESH_HOME": str(settings.home),
            "CIVICMESH_METADATA_URL": settings.metadata_url,
            **(env or {}),
        }
        self._log = log_path.open("wb")  # a file, not a pipe: a full pipe blocks the server
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "civicmesh", "serve", "--port", str(self.port)],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=self._log,
            start_new_session=True,
        )
        deadline = time.monotonic() + 120
        while not self._answers("/healthz"):
            if time.monotonic() > deadline or self.proc.poll() is not None:
                self.stop()
                raise AssertionError(f"gateway did not start: {self.output()}")
            time.sleep(0.2)

    def _answers(self, path: str) -> bool:
        try:
            return httpx.get(f"{self.base}{path}", timeout=2).status_code == 200
        except httpx.HTTPError:
            return False

    def readiness(self) -> tuple[int, dict]:
        response = httpx.get(f"{self.base}/readyz", timeout=30)
        return response.status_code, response.json()

    def alive(self) -> bool:
        return self.proc.poll() is None

    def output(self, chars: int = 3000) -> str:
        self._log.flush()
        return self.log_path.read_text(errors="replace")[-chars:]

    def stop(self) -> None:
        if self.alive():
            os.killpg(self.proc.pid, signal.SIGTERM)
            self.proc.wait(30)
        self._log.close()
