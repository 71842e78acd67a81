"""The command runner: bounded by the RPC's deadline, run and killed as a whole process group, killed
when the plugin stops or dies, and the in-flight guard released so a retry is not refused."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import grpc
import pytest

from provisioner.csi._proto import csi_pb2
from provisioner.errors import DeadlineExceeded, Internal, Unavailable
from provisioner.mount.commands import LIVE, CommandFailed, run
from provisioner.mount.linux import brief
from provisioner.node import NodeCore
from provisioner.ports.clock import Deadline, SystemClock, deadline_scope
from tests.grpcutil import Stubs, channel, running_server
from tests.node.stop_helper import VOL, SlowMkfs, slow_node

ROOT = Path(__file__).resolve().parents[2]


def _gone(pid: int) -> bool:
    """True once ``pid`` no longer runs (a zombie waiting for its reaper counts as gone)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except FileNotFoundError:
        return True
    return state in ("Z", "X")


def _until(condition: Callable[[], bool], seconds: float = 10.0) -> bool:
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        if condition():
            return True
        time.sleep(0.02)
    return condition()


def _pid(pidfile: Path) -> int:
    assert _until(lambda: pidfile.exists() and pidfile.read_text().strip() != ""), "the command never started"
    return int(pidfile.read_text())


def test_stderr_is_in_the_error_and_ok_codes_are_accepted() -> None:
    with pytest.raises(Internal, match="exit code 3: it broke"):
        run(["sh", "-c", "echo it broke >&2; exit 3"], 5)
    assert run(["sh", "-c", "exit 2"], 5, ok_codes=(0, 2)).returncode == 2


def test_a_missing_command_says_so() -> None:
    with pytest.raises(CommandFailed, match="not installed"):
        run(["zonal-no-such-tool"], 5)


def test_a_timeout_kills_the_whole_group(tmp_path: Path) -> None:
    pidfile = tmp_path / "child"
    with pytest.raises(DeadlineExceeded, match="killed"):
        run(["sh", "-c", f"sleep 60 & echo $! > {pidfile}; wait"], 0.5)
    child = _pid(pidfile)
    assert _until(lambda: _gone(child)), "the command's own child outlived the timeout"
    assert LIVE.running() == {}


def test_the_callers_deadline_bounds_the_command(tmp_path: Path) -> None:
    started = time.monotonic()
    with deadline_scope(Deadline(SystemClock(), 0.4)), pytest.raises(DeadlineExceeded):
        run(["sleep", "60"], 300)
    assert time.monotonic() - started < 5
    with deadline_scope(Deadline(SystemClock(), 0)), pytest.raises(DeadlineExceeded, match="no time left"):
        run(["sh", "-c", f"touch {tmp_path / 'ran'}"], 300)
    assert not (tmp_path / "ran").exists()


def test_kill_all_ends_running_commands_and_those_started_after(tmp_path: Path) -> None:
    pidfile = tmp_path / "pid"
    errors: list[BaseException] = []

    def call() -> None:
        try:
            run(["sh", "-c", f"echo $$ > {pidfile}; exec sleep 60"], 300)
        except BaseException as e:
            errors.append(e)

    worker = threading.Thread(target=call)
    worker.start()
    pid = _pid(pidfile)
    try:
        # The command may write its pid before run() has registered its group (Popen returns after
        # the exec): wait for the registration, not a moment.
        assert _until(lambda: len(LIVE.running()) == 1)
        assert LIVE.kill_all() == 1
        worker.join(10)
        assert isinstance(errors[0], Unavailable) and "shutting down" in str(errors[0])
        assert _until(lambda: _gone(pid))
        with pytest.raises(Unavailable):
            run(["sleep", "60"], 300)  # stopping: a command started now is killed at once
    finally:
        LIVE.reset()
    assert run(["true"], 5).returncode == 0


@pytest.fixture
def slow(tmp_path: Path) -> Iterator[tuple[Stubs, SlowMkfs, NodeCore]]:
    services, mounter, core = slow_node(str(tmp_path / "mkfs.pid"))
    with running_server(tmp_path, services, mode="node") as server, channel(server) as ch:
        yield Stubs(ch), mounter, core


def test_an_rpc_deadline_kills_mkfs_releases_the_guard_and_the_retry_redoes_it(
    slow: tuple[Stubs, SlowMkfs, NodeCore],
) -> None:
    stubs, mounter, core = slow
    cap = csi_pb2.VolumeCapability(
        mount=csi_pb2.VolumeCapability.MountVolume(),
        access_mode=csi_pb2.VolumeCapability.AccessMode(
            mode=csi_pb2.VolumeCapability.AccessMode.SINGLE_NODE_WRITER
        ),
    )
    request = csi_pb2.NodeStageVolumeRequest(
        volume_id=VOL, staging_target_path="/stage", volume_capability=cap
    )
    with pytest.raises(grpc.RpcError) as e:
        stubs.node.NodeStageVolume(request, timeout=1.0)
    # The call's one deadline ends DEADLINE_HEADROOM before the caller's: the plugin answers first.
    assert e.value.code() == grpc.StatusCode.ABORTED and "it was killed" in (e.value.details() or "")
    mkfs = _pid(Path(mounter.pidfile))
    assert _until(lambda: _gone(mkfs)), "mkfs outlived the caller's deadline"
    assert _until(lambda: core.inflight.held() == frozenset()), "the in-flight guard was never released"
    assert core.state.format_started(VOL) is not None  # the retry knows a format was cut short
    Path(mounter.pidfile).unlink()
    with pytest.raises(grpc.RpcError) as again:
        stubs.node.NodeStageVolume(request, timeout=1.0)
    # mkfs ran and was killed again: the guard was free (not "already in progress").
    assert again.value.code() == grpc.StatusCode.ABORTED and "it was killed" in (again.value.details() or "")
    assert _until(lambda: _gone(_pid(Path(mounter.pidfile))))


def _start_helper(tmp_path: Path) -> tuple[subprocess.Popen[str], Path, Stubs, grpc.Channel]:
    socket, pidfile = tmp_path / "csi.sock", tmp_path / "mkfs.pid"
    proc = subprocess.Popen(
        [sys.executable, "-m", "tests.node.stop_helper", str(socket), str(pidfile)],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None and proc.stdout.readline().strip() == "serving"
    ch = grpc.insecure_channel(f"unix://{socket}")
    return proc, pidfile, Stubs(ch), ch


def _stage_in_background(stubs: Stubs) -> list[grpc.StatusCode]:
    codes: list[grpc.StatusCode] = []
    cap = csi_pb2.VolumeCapability(
        mount=csi_pb2.VolumeCapability.MountVolume(),
        access_mode=csi_pb2.VolumeCapability.AccessMode(
            mode=csi_pb2.VolumeCapability.AccessMode.SINGLE_NODE_WRITER
        ),
    )

    def call() -> None:
        try:
            stubs.node.NodeStageVolume(
                csi_pb2.NodeStageVolumeRequest(
                    volume_id=VOL, staging_target_path="/stage", volume_capability=cap
                ),
                timeout=60,
            )
        except grpc.RpcError as e:
            codes.append(e.code())

    threading.Thread(target=call, daemon=True).start()
    return codes


@pytest.mark.e2e
@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGKILL])
def test_stopping_or_killing_the_plugin_kills_its_commands(tmp_path: Path, sig: signal.Signals) -> None:
    proc, pidfile, stubs, ch = _start_helper(tmp_path)
    try:
        codes = _stage_in_background(stubs)
        mkfs = _pid(pidfile)
        started = time.monotonic()
        proc.send_signal(sig)
        proc.wait(timeout=20)
        assert _until(lambda: _gone(mkfs)), f"mkfs outlived the plugin ({sig.name})"
        if sig == signal.SIGTERM:
            # The call waiting on mkfs ended at once instead of holding the stop for the grace period.
            assert time.monotonic() - started < 5 and proc.returncode == 0
            assert _until(lambda: bool(codes)) and codes[0] == grpc.StatusCode.UNAVAILABLE
    finally:
        ch.close()
        assert proc.stdout is not None
        proc.stdout.close()
        if proc.poll() is None:
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait()


def test_brief_keeps_the_first_lines_of_stderr_up_to_a_limit() -> None:
    usage = "mkfs.ext4: bad option\n\n  Usage: mkfs.ext4 [-c]\n  -b size\n  -C cluster\n"
    assert brief(usage) == "mkfs.ext4: bad option; Usage: mkfs.ext4 [-c]; -b size"
    assert brief("one\ntwo") == "one; two"
    assert brief("x" * 400) == "x" * 300 + "…"
