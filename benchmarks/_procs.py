"""Start the processes a benchmark measures (simulator server, zonal) and stop them; no figures here."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any

import grpc

# The benchmarks talk to a local simulator only: dummy credentials, no real AWS configuration.
BENCH_ENV = {
    **{k: v for k, v in os.environ.items() if not k.startswith("AWS_")},
    "AWS_ACCESS_KEY_ID": "bench",
    "AWS_SECRET_ACCESS_KEY": "bench",
    "AWS_EC2_METADATA_DISABLED": "true",
    "AWS_CONFIG_FILE": os.devnull,
    "AWS_SHARED_CREDENTIALS_FILE": os.devnull,
}


def _stop(proc: subprocess.Popen[Any]) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@contextmanager
def simulator(args: Sequence[str]) -> Iterator[dict[str, Any]]:
    """``python -m provisioner.embedded.ec2`` on a free port; yields its JSON description line."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "provisioner.embedded.ec2", "--port", "0", *args],
        stdout=subprocess.PIPE,
        text=True,
        env=BENCH_ENV,
    )
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        if not line:
            raise RuntimeError("the simulator exited before listening")
        yield json.loads(line)
    finally:
        _stop(proc)


@contextmanager
def zonal(args: Sequence[str], socket: Path, log: IO[str]) -> Iterator[grpc.Channel]:
    """``python -m provisioner <args> --endpoint unix://<socket>``; yields a ready channel to it."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "provisioner", *args, "--endpoint", f"unix://{socket}"],
        stdout=log,
        stderr=subprocess.STDOUT,
        env=BENCH_ENV,
    )
    channel = grpc.insecure_channel(f"unix://{socket}", options=[("grpc.max_concurrent_streams", 1000)])
    try:
        deadline = time.monotonic() + 60
        while not socket.exists():
            if proc.poll() is not None:
                raise RuntimeError(f"zonal exited with {proc.returncode}; see {log.name}")
            if time.monotonic() > deadline:
                raise RuntimeError("zonal did not listen within 60 s")
            time.sleep(0.05)
        grpc.channel_ready_future(channel).result(timeout=30)
        yield channel
    finally:
        channel.close()
        _stop(proc)
