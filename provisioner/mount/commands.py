"""Running OS commands the node owns: bounded by the caller's deadline, killed as a whole group.

Every command zonal runs (mkfs, fsck, resize, mount, blkid, losetup…) goes through :func:`run`:

- never through a shell, stdin closed, output captured;
- in a process group of its own (``process_group=0``), so a timeout or a stop kills the command
  *and* anything it started (``killpg``), never zonal's own group;
- with ``--pdeathsig``-like protection: the child gets SIGKILL if zonal itself dies without
  cleaning up (``prctl(PR_SET_PDEATHSIG)`` through util-linux ``setpriv`` when it is installed);
- bounded by the shorter of its own timeout and the RPC's deadline
  (:func:`provisioner.ports.clock.current_deadline`, set by the CSI layer for each call); past it
  the group is killed and :class:`~provisioner.errors.DeadlineExceeded` raised;
- registered in :data:`LIVE` while it runs, so the server's shutdown (:func:`kill_all`) kills
  every command still running instead of leaving it behind (the call then fails UNAVAILABLE).

This module decides nothing about what to run; it must not parse a command's output.
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import signal
import subprocess
import threading
from collections.abc import Sequence

from provisioner.errors import DeadlineExceeded, Internal, Unavailable
from provisioner.ports.clock import current_deadline

log = logging.getLogger(__name__)

_KILL_WAIT = 5.0  # seconds to reap a group after SIGKILL (the kernel may finish a syscall first)


class CommandFailed(Internal):
    """An OS command exited non-zero; ``returncode`` and ``stderr`` say how."""

    def __init__(self, message: str, returncode: int, stderr: str) -> None:
        super().__init__(message)
        self.returncode = returncode
        self.stderr = stderr


class LiveCommands:
    """The process groups of the commands running now; :meth:`kill_all` ends every one."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._groups: dict[int, str] = {}
        self._stopping = False

    def add(self, pgid: int, what: str) -> None:
        with self._lock:
            self._groups[pgid] = what
            stopping = self._stopping
        if stopping:  # started while the process is stopping: it must not outlive us either
            _kill_group(pgid)

    def discard(self, pgid: int) -> None:
        with self._lock:
            self._groups.pop(pgid, None)

    @property
    def stopping(self) -> bool:
        with self._lock:
            return self._stopping

    def running(self) -> dict[int, str]:
        with self._lock:
            return dict(self._groups)

    def kill_all(self) -> int:
        """SIGKILL every live group (also those started from now on); returns how many were live."""
        with self._lock:
            self._stopping = True
            groups = dict(self._groups)
        for pgid, what in groups.items():
            log.warning("stopping: killing %s (process group %d)", what, pgid)
            _kill_group(pgid)
        return len(groups)

    def reset(self) -> None:
        """Accept new commands again (tests that stop and restart in one process)."""
        with self._lock:
            self._stopping = False


LIVE = LiveCommands()


def kill_all() -> int:
    """Kill every command :func:`run` has running, and those started from now on, until
    :func:`allow_new` (called when zonal stops, before it waits for the calls in flight)."""
    return LIVE.kill_all()


def allow_new() -> None:
    """Run commands again (once no call is in flight: the clean-up after a stop needs ``losetup``)."""
    LIVE.reset()


def _kill_group(pgid: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, signal.SIGKILL)


def _pdeathsig_prefix() -> list[str]:
    # setpriv(1) sets PR_SET_PDEATHSIG and execs the command: if zonal is killed -9, the kernel
    # kills the command too. Without setpriv the process group and kill_all still apply.
    path = shutil.which("setpriv")
    return [path, "--pdeathsig", "KILL", "--"] if path else []


_PREFIX: list[str] | None = None


def _prefix() -> list[str]:
    global _PREFIX
    if _PREFIX is None:
        _PREFIX = _pdeathsig_prefix()
    return _PREFIX


def run(
    cmd: Sequence[str],
    timeout: float,
    ok_codes: Sequence[int] = (0,),
    pass_fds: Sequence[int] = (),
) -> subprocess.CompletedProcess[str]:
    """Run ``cmd`` as described in the module docstring and return it; CommandFailed (with stderr)
    or DeadlineExceeded otherwise. ``ok_codes`` lists exit codes the caller handles itself;
    ``pass_fds`` are file descriptors the command may use (``/proc/self/fd/N`` paths)."""
    shown = " ".join(cmd)
    deadline = current_deadline()
    limit = timeout if deadline is None else deadline.bounded(timeout)
    if limit <= 0:
        raise DeadlineExceeded(f"no time left before the caller's deadline to run {shown}")
    if shutil.which(cmd[0]) is None:
        raise CommandFailed(f"{cmd[0]} is not installed (needed for {shown})", 127, "")
    log.debug("running %s (at most %.1fs)", shown, limit)
    try:
        proc = subprocess.Popen(
            [*_prefix(), *cmd],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            encoding="utf-8",
            errors="replace",  # a label or stderr in another encoding must not fail the call
            process_group=0,
            pass_fds=tuple(pass_fds),
            close_fds=True,
        )
    except FileNotFoundError as e:
        raise CommandFailed(f"{cmd[0]} is not installed (needed for {shown})", 127, str(e)) from e
    pgid = proc.pid  # process_group=0: the child leads a new group whose id is its pid
    LIVE.add(pgid, shown)
    try:
        try:
            out, err = proc.communicate(timeout=limit)
        except subprocess.TimeoutExpired as e:
            _kill_group(pgid)
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.communicate(timeout=_KILL_WAIT)
            raise DeadlineExceeded(f"{shown} did not finish within {limit:.3g}s; it was killed") from e
        except BaseException:
            _kill_group(pgid)
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.communicate(timeout=_KILL_WAIT)
            raise
    finally:
        LIVE.discard(pgid)
    if proc.returncode not in ok_codes:
        stderr = (err or out).strip()
        if proc.returncode < 0 and LIVE.stopping:
            # Killed by kill_all: the plugin is stopping; the CO retries against the next one.
            raise Unavailable(f"{shown} was stopped: zonal is shutting down")
        if proc.returncode < 0:
            raise CommandFailed(f"{shown} was killed by signal {-proc.returncode}", proc.returncode, stderr)
        raise CommandFailed(
            f"{shown} failed with exit code {proc.returncode}: {stderr or '(no output)'}",
            proc.returncode,
            stderr,
        )
    return subprocess.CompletedProcess(list(cmd), proc.returncode, out, err)
