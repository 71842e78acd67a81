"""What an embedded zonal process made in the kernel and on disk, written down so it can be undone.

Why it exists: ``zonal all --cloud embedded`` and ``zonal demo`` back volumes with loop devices, link them
under ``/dev/disk/by-id``, mount them (through the node service) and make folders. A clean stop releases
all of it; a crash (``kill -9``, an OOM kill, a power-cut of the terminal) cannot. So each process keeps
a ledger, ``<runtime dir>/<pid>.json``: its pid, its start time (so a reused pid is not mistaken for
it), the boot it ran in, and every backing file, loop device, link and folder it made, rewritten on each
change. The next embedded start calls :func:`reclaim`, which releases what the ledgers of *dead*
processes list — and only what still matches the record:

* a loop device only when ``/sys/block/loopN/loop/backing_file`` is a backing file that process
  recorded (never "every loop device that looks like zonal's");
* mounts only of such a loop device (its major:minor in ``/proc/self/mountinfo``), newest first;
* a link only when it still points where that process pointed it;
* a folder only when that process made it and nothing is mounted below it.

What it must not do: touch anything a live process recorded, anything not recorded, or anything whose
kernel state no longer matches the record. It never formats and never writes to a device.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import json
import logging
import os
import shutil
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from provisioner.mount.linux import CommandFailed, parse_mountinfo, run

log = logging.getLogger("zonal.embedded")

_TIMEOUT = 30.0
_DELETED = " (deleted)"


def boot_id() -> str:
    try:
        return Path("/proc/sys/kernel/random/boot_id").read_text().strip()
    except OSError:
        return ""


def process_start_time(pid: int) -> str:
    """The process's start time in clock ticks since boot (``/proc/PID/stat`` field 22); "" if gone."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return ""
    fields = stat[stat.rindex(")") + 2 :].split()  # after "pid (comm) ": field 3 onwards
    return fields[19] if len(fields) > 19 else ""


class Ledger:
    """The running process's own ledger. Every ``*_made`` call is written to disk before it returns."""

    def __init__(self, runtime_dir: str | os.PathLike[str], pid: int | None = None) -> None:
        self.dir = Path(runtime_dir)
        self.pid = os.getpid() if pid is None else pid
        self.path = self.dir / f"{self.pid}.json"
        self._lock = threading.Lock()
        self.data: dict[str, Any] = {
            "pid": self.pid,
            "start_time": process_start_time(self.pid),
            "boot_id": boot_id(),
            "files": [],
            "loops": {},
            "links": {},
            "folders": [],
        }
        self.dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        self._save()

    def _save(self) -> None:
        partial = self.path.with_name(f".{self.path.name}.partial")
        partial.write_text(json.dumps(self.data, indent=1, sort_keys=True))
        os.replace(partial, self.path)

    def _change(self, edit: Callable[[dict[str, Any]], None]) -> None:
        with self._lock:
            edit(self.data)
            self._save()

    def _listed(self, key: str, path: str | os.PathLike[str], present: bool) -> None:
        """Add ``path`` (absolute, once) to the list ``key``, or take it out."""
        p = os.path.abspath(path)

        def edit(d: dict[str, Any]) -> None:
            items: list[str] = d[key]
            if present and p not in items:
                items.append(p)
            elif not present and p in items:
                items.remove(p)

        self._change(edit)

    def file_made(self, path: str | os.PathLike[str]) -> None:
        """A backing file this process made; recorded *before* a loop device is set up on it."""
        self._listed("files", path, True)

    def file_removed(self, path: str | os.PathLike[str]) -> None:
        self._listed("files", path, False)

    def loop_made(self, device: str, backing_file: str | os.PathLike[str]) -> None:
        self._change(lambda d: d["loops"].__setitem__(device, os.path.abspath(backing_file)))

    def loop_removed(self, device: str) -> None:
        self._change(lambda d: d["loops"].pop(device, None))

    def link_made(self, link: str | os.PathLike[str], target: str) -> None:
        self._change(lambda d: d["links"].__setitem__(str(link), target))

    def link_removed(self, link: str | os.PathLike[str]) -> None:
        self._change(lambda d: d["links"].pop(str(link), None))

    def folder_made(self, folder: str | os.PathLike[str]) -> None:
        self._listed("folders", folder, True)

    def folder_removed(self, folder: str | os.PathLike[str]) -> None:
        self._listed("folders", folder, False)

    def leftovers(self) -> str:
        """What is still recorded, in words ("" when nothing): for a stop that could not release all."""
        return _count(self.data)

    def close(self) -> None:
        """Forget the ledger: call once everything it lists is released. With something still listed
        the file stays, so the next start reclaims it."""
        with self._lock:
            if _count(self.data):
                log.warning("kept %s: it still lists %s", self.path, _count(self.data))
                return
            with contextlib.suppress(FileNotFoundError):
                self.path.unlink()


def _count(data: dict[str, Any]) -> str:
    parts = []
    for key, one, many in (
        ("mounts", "mount", "mounts"),
        ("loops", "loop device", "loop devices"),
        ("links", "link", "links"),
        ("folders", "folder", "folders"),
        ("files", "backing file", "backing files"),
    ):
        n = len(data.get(key) or ())
        if n:
            parts.append(f"{n} {one if n == 1 else many}")
    return ", ".join(parts)


# --- reclaiming a dead process's leftovers ----------------------------------------------------------------


@dataclass
class Reclaimed:
    """What :func:`reclaim` released for one dead process, and what it had to leave."""

    pid: int
    released: dict[str, list[str]] = field(default_factory=dict)
    left: list[str] = field(default_factory=list)

    def add(self, kind: str, what: str) -> None:
        self.released.setdefault(kind, []).append(what)

    def summary(self) -> str:
        released = _count({k: v for k, v in self.released.items()}) or "nothing still present"
        text = f"released what embedded zonal process {self.pid} left when it died: {released}"
        if self.left:
            text += f"; left alone: {'; '.join(self.left)}"
        return text


def alive(data: dict[str, Any]) -> bool:
    """Whether the process a ledger belongs to still runs (same pid, same start time, same boot)."""
    pid = int(data.get("pid") or 0)
    if pid <= 0:
        return False
    if data.get("boot_id") and data["boot_id"] != boot_id():
        return False  # recorded in an earlier boot: that process is gone, whatever runs as pid now
    started = process_start_time(pid)
    return bool(started) and started == str(data.get("start_time") or "")


def loop_backing_files(sys_block: Path = Path("/sys/block")) -> dict[str, str]:
    """Every attached loop device → its backing file as the kernel reports it (" (deleted)" dropped)."""
    out: dict[str, str] = {}
    for backing in sys_block.glob("loop*/loop/backing_file"):
        with contextlib.suppress(OSError):
            text = backing.read_text().strip()
            if text.endswith(_DELETED):
                text = text[: -len(_DELETED)]
            out[f"/dev/{backing.parent.parent.name}"] = text
    return out


def _device_number(device: str) -> str:
    st = os.stat(device)
    return f"{os.major(st.st_rdev)}:{os.minor(st.st_rdev)}"


def mounts_of(device: str, mountinfo: str = "/proc/self/mountinfo") -> list[str]:
    """Mount points of ``device``'s filesystem, newest first (bind mounts before what they bind)."""
    try:
        number = _device_number(device)
        mounts = parse_mountinfo(Path(mountinfo).read_text())
    except OSError:
        return []
    return [m.target for m in reversed(mounts) if m.major_minor == number]


def mounts_below(folder: str, mountinfo: str = "/proc/self/mountinfo") -> list[str]:
    try:
        mounts = parse_mountinfo(Path(mountinfo).read_text())
    except OSError:
        return []
    prefix = folder.rstrip("/") + "/"
    return [m.target for m in mounts if m.target == folder or m.target.startswith(prefix)]


def release_device(device: str, expected_file: str, report: Reclaimed | None = None) -> bool:
    """Unmount ``device``'s mounts and detach it — only while it still backs ``expected_file``.
    True when the device is gone (or was never ours to begin with)."""
    if loop_backing_files().get(device) != expected_file:
        return True  # already detached, or reused by someone else: not ours to touch
    for target in mounts_of(device):
        try:
            run(["umount", target], _TIMEOUT)
            if report is not None:
                report.add("mounts", target)
            log.info("unmounted %s (%s)", target, device)
        except CommandFailed as e:
            if report is not None:
                report.left.append(f"{target} ({device}) could not be unmounted: {e.stderr or e}")
            else:
                log.warning("could not unmount %s (%s): %s", target, device, e.stderr or e)
            return False
    if loop_backing_files().get(device) != expected_file:
        return True
    try:
        run(["losetup", "--detach", device], _TIMEOUT)
    except CommandFailed as e:
        if "no such device" in e.stderr.lower():
            return True
        if report is not None:
            report.left.append(f"{device} could not be detached: {e.stderr or e}")
        return False
    if report is not None:
        report.add("loops", device)
    return True


def _remove_link(link: str, target: str, report: Reclaimed) -> None:
    try:
        if os.readlink(link) != target:
            return  # changed since: someone else's now
        os.unlink(link)
        report.add("links", link)
    except OSError as e:
        if e.errno not in (errno.ENOENT, errno.EINVAL):
            report.left.append(f"{link}: {e.strerror}")


def remove_folder(folder: str, report: Reclaimed | None = None) -> bool:
    """Delete a folder this process (or a dead one) made — never while anything is mounted below it,
    which would delete the files of the mounted filesystem."""
    if not os.path.isdir(folder):
        return True
    below = mounts_below(folder)
    if below:
        reason = f"{folder} still has {len(below)} mount(s) below it ({', '.join(below)})"
        if report is not None:
            report.left.append(reason)
        else:
            log.warning("not removing %s", reason)
        return False
    shutil.rmtree(folder, ignore_errors=True)
    if report is not None:
        report.add("folders", folder)
    return not os.path.exists(folder)


def _reclaim_one(data: dict[str, Any]) -> Reclaimed:
    report = Reclaimed(int(data.get("pid") or 0))
    files = set(data.get("files") or ()) | set((data.get("loops") or {}).values())
    attached = loop_backing_files()
    for device in sorted(d for d, backing in attached.items() if backing in files):
        release_device(device, attached[device], report)
    for link, target in sorted((data.get("links") or {}).items()):
        _remove_link(link, target, report)
    still = loop_backing_files()
    for file in sorted(files):
        if file in still.values():
            continue  # could not be detached: keep its data
        with contextlib.suppress(FileNotFoundError):
            os.unlink(file)
            report.add("files", file)
    for folder in sorted(data.get("folders") or (), key=len, reverse=True):
        remove_folder(folder, report)
    return report


@contextlib.contextmanager
def _locked(runtime_dir: Path) -> Iterator[None]:
    runtime_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    with open(runtime_dir / ".lock", "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def reclaim(runtime_dir: str | os.PathLike[str]) -> list[Reclaimed]:
    """Release what the ledgers of dead embedded processes in ``runtime_dir`` list (see the module
    docstring for what "matches" means); returns one report per dead process. A ledger whose every
    entry was released (or was already gone) is deleted; one with something left stays for next time."""
    folder = Path(runtime_dir)
    if not folder.is_dir():
        return []
    reports = []
    with _locked(folder):
        for path in sorted(folder.glob("*.json")):
            try:
                data = json.loads(path.read_text())
            except (OSError, ValueError):
                continue  # half-written by a live process, or not ours
            if not isinstance(data, dict) or alive(data):
                continue
            report = _reclaim_one(data)
            reports.append(report)
            if not report.left:
                with contextlib.suppress(FileNotFoundError):
                    path.unlink()
    return reports


def start(runtime_dir: str | os.PathLike[str]) -> Ledger:
    """Reclaim dead predecessors' leftovers (saying so), then open this process's own ledger."""
    for report in reclaim(runtime_dir):
        if report.released or report.left:
            log.warning("%s", report.summary())
        else:
            log.info("%s", report.summary())
    return Ledger(runtime_dir)
