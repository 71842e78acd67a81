"""Start, drive and always stop real ``zonal`` processes (``python -m provisioner``) for the e2e tests.

Everything waits by polling with generous deadlines (the suite runs on a loaded 2-core machine):
a server is ready when its socket accepts a connection, never after a fixed sleep.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from provisioner.cli import COMMAND_MODULES

READY_TIMEOUT = 90.0  # a server's start-up, including imports, on a busy machine
CALL_TIMEOUT = 90.0  # one `zonal csi` process, start to finish
STOP_TIMEOUT = 30.0

# `zonal csi` until the CLI root registers it: the same `register` through a two-line shim.
_CSI_SHIM = (
    "import argparse, sys; from provisioner.cli import csi; p = argparse.ArgumentParser(prog='zonal'); "
    "csi.register(p.add_subparsers(dest='command')); a = p.parse_args(sys.argv[1:]); sys.exit(a.func(a))"
)


def zonal_argv(*args: str) -> list[str]:
    if args and args[0] == "csi" and "provisioner.cli.csi" not in COMMAND_MODULES:
        return [sys.executable, "-c", _CSI_SHIM, *args]
    return [sys.executable, "-m", "provisioner", *args]


def child_env(extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """The test's environment (AWS settings already stripped by tests/conftest.py) plus ``extra``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "CSI_"))}
    env["PYTHONUNBUFFERED"] = "1"
    env.update(extra or {})
    return env


@dataclass
class Server:
    """A running ``zonal controller|node|all``; its stdout and stderr go to ``log``."""

    proc: subprocess.Popen[bytes]
    socket: Path
    log: Path

    @property
    def endpoint(self) -> str:
        return f"unix://{self.socket}"

    def output(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""

    def stop(self, sig: int = signal.SIGTERM, timeout: float = STOP_TIMEOUT) -> int:
        """Send ``sig`` and wait for the exit status; kill after ``timeout``."""
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        try:
            return self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(timeout=timeout)
            raise AssertionError(
                f"zonal did not stop within {timeout}s of {signal.Signals(sig).name}"
            ) from None


def _accepts(path: Path) -> bool:
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        s.settimeout(1.0)
        s.connect(str(path))
        return True
    except OSError:
        return False
    finally:
        s.close()


@contextlib.contextmanager
def running(
    args: Sequence[str],
    sock: Path,
    log: Path,
    env: Mapping[str, str] | None = None,
    ready_timeout: float = READY_TIMEOUT,
) -> Iterator[Server]:
    """Start ``zonal ARGS --endpoint unix://SOCK``, wait until the socket answers, always stop it."""
    with log.open("wb") as out:
        proc = subprocess.Popen(
            zonal_argv(*args, "--endpoint", f"unix://{sock}"),
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env=child_env(env),
        )
    server = Server(proc, sock, log)
    try:
        deadline = time.monotonic() + ready_timeout
        while not (sock.exists() and _accepts(sock)):
            if proc.poll() is not None:
                raise AssertionError(
                    f"zonal exited with {proc.returncode} before serving:\n{server.output()}"
                )
            if time.monotonic() > deadline:
                raise AssertionError(f"zonal not serving after {ready_timeout}s:\n{server.output()}")
            time.sleep(0.05)
        yield server
    finally:
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(timeout=STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=STOP_TIMEOUT)


def run_zonal(
    *args: str, env: Mapping[str, str] | None = None, timeout: float = CALL_TIMEOUT
) -> subprocess.CompletedProcess[str]:
    """Run one short-lived ``zonal`` command to completion."""
    return subprocess.run(
        zonal_argv(*args),
        capture_output=True,
        text=True,
        stdin=subprocess.DEVNULL,
        env=child_env(env),
        timeout=timeout,
        check=False,
    )


def csi(server: Server, *args: str) -> subprocess.CompletedProcess[str]:
    """``zonal csi --endpoint <server> ARGS``."""
    return run_zonal("csi", "--endpoint", server.endpoint, *args)


def csi_json(server: Server, *args: str) -> dict[str, Any]:
    """``zonal csi -o json ARGS``, which must succeed; its output parsed."""
    done = csi(server, "-o", "json", *args)
    assert done.returncode == 0, f"zonal csi {' '.join(args)} failed ({done.returncode}): {done.stderr}"
    result: dict[str, Any] = json.loads(done.stdout)
    return result
