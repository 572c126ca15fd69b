"""Starts and stops a real ``tessera serve`` for the tests.

The binary comes from ``TESSERA_BIN`` (``scripts/test.sh`` builds it and sets
it). Each server gets its own temporary SQLite database, its own API key and
a free port chosen by the kernel (``--listen 127.0.0.1:0``; the bound address
is read from the line the server prints).
"""

from __future__ import annotations

import os
import re
import subprocess
import threading
from pathlib import Path
from typing import IO

LISTENING = re.compile(r"tessera listening on (http://\S+)")


def tessera_binary() -> str:
    """The binary under test; a missing one is a failure, never a skip."""
    path = os.environ.get("TESSERA_BIN")
    if not path:
        raise RuntimeError(
            "TESSERA_BIN is not set: build tessera (cargo build -p tessera-server) "
            "and point TESSERA_BIN at target/debug/tessera"
        )
    if not os.access(path, os.X_OK):
        raise RuntimeError(f"TESSERA_BIN={path} is not an executable file")
    return os.path.abspath(path)


class TesseraServer:
    """One ``tessera serve`` process on a free port.

    ``settings`` are configuration keys (``idle_timeout="2s"``), passed as
    ``TESSERA_*`` environment variables.
    """

    def __init__(self, workdir: Path, **settings: str) -> None:
        self.workdir = workdir
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.env = {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "TESSERA_STORE": f"sqlite://{workdir / 'sessions.db'}",
            "TESSERA_KEYS_DIR": str(workdir / "keys"),
            "TESSERA_LOG_FILTER": "warn",
        }
        for key, value in settings.items():
            self.env["TESSERA_" + key.upper()] = value
        self.url = ""
        self.api_key = ""
        self.process: subprocess.Popen[str] | None = None
        self._log: IO[str] | None = None

    def start(self) -> TesseraServer:
        binary = tessera_binary()
        created = subprocess.run(
            [binary, "api-key", "create", "pytest"],
            cwd=self.workdir,
            env=self.env,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        if created.returncode != 0:
            raise RuntimeError(f"tessera api-key create failed: {created.stderr}")
        self.api_key = created.stdout.strip()
        self._log = open(self.workdir / "tessera.log", "w")  # noqa: SIM115
        self.process = subprocess.Popen(
            [binary, "serve", "--listen", "127.0.0.1:0"],
            cwd=self.workdir,
            env=self.env,
            stdout=subprocess.PIPE,
            stderr=self._log,
            text=True,
        )
        self.url = self._read_url()
        return self

    def _read_url(self) -> str:
        assert self.process is not None and self.process.stdout is not None
        found: list[str] = []

        def read() -> None:
            assert self.process is not None and self.process.stdout is not None
            for line in self.process.stdout:
                match = LISTENING.search(line)
                if match:
                    found.append(match.group(1))
                    return

        reader = threading.Thread(target=read, daemon=True)
        reader.start()
        reader.join(timeout=120)
        if not found:
            self.stop()
            log = (self.workdir / "tessera.log").read_text()
            raise RuntimeError(f"tessera serve did not start:\n{log}")
        # Keep draining stdout so the server never blocks on a full pipe.
        threading.Thread(target=self.process.stdout.read, daemon=True).start()
        return found[0]

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        if self._log is not None:
            self._log.close()
            self._log = None
