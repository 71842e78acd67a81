"""The ledger's reclaim releases only what a *dead* embedded process recorded, and only while the
kernel still shows it as recorded. Real loop devices and mounts (root) in tmp_path; nothing else on the
machine is touched, which these tests check by keeping a decoy loop device of their own alive."""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from provisioner.embedded.ledger import (
    Ledger,
    alive,
    boot_id,
    loop_backing_files,
    process_start_time,
    reclaim,
)
from provisioner.mount.linux import run

ROOT = pytest.mark.skipif(os.geteuid() != 0, reason="needs root: loop devices and mounts")


def dead_pid() -> int:
    proc = subprocess.Popen(["true"])
    proc.wait()
    return proc.pid


def write_ledger(runtime: Path, **fields: Any) -> Path:
    runtime.mkdir(parents=True, exist_ok=True)
    data = {"pid": dead_pid(), "start_time": "1", "boot_id": boot_id(), "files": [], "loops": {}}
    data |= {"links": {}, "folders": []}
    data.update(fields)
    path = runtime / f"{data['pid']}.json"
    path.write_text(json.dumps(data))
    return path


class Loops:
    """Loop devices this test makes, always detached at the end."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.devices: list[str] = []

    def make(self, name: str) -> tuple[str, str]:
        self.folder.mkdir(parents=True, exist_ok=True)
        path = self.folder / name
        with open(path, "wb") as f:
            f.truncate(16 << 20)
        device = run(["losetup", "--find", "--show", str(path)], 30).stdout.strip()
        self.devices.append(device)
        return device, str(path)

    def cleanup(self) -> None:
        for device in self.devices:
            if loop_backing_files().get(device, "").startswith(str(self.folder)):
                run(["losetup", "--detach", device], 30)


@pytest.fixture
def loops(tmp_path: Path) -> Iterator[Loops]:
    made = Loops(tmp_path / "files")
    try:
        yield made
    finally:
        prefix = str(tmp_path) + "/"
        mounts = Path("/proc/self/mountinfo").read_text().splitlines()
        for target in reversed([line.split()[4] for line in mounts]):
            if target.startswith(prefix):
                run(["umount", "-l", target], 30)
        made.cleanup()


def test_liveness_is_pid_and_start_time_and_boot() -> None:
    me = {"pid": os.getpid(), "start_time": process_start_time(os.getpid()), "boot_id": boot_id()}
    assert process_start_time(os.getpid()).isdigit()
    assert alive(me)
    assert not alive({**me, "start_time": "1"})  # the pid was reused by another process
    assert not alive({**me, "boot_id": "another-boot"})
    assert not alive({"pid": dead_pid(), "start_time": "1"})
    assert not alive({"pid": 0})


def test_the_own_ledger_records_each_change_on_disk_and_goes_when_empty(tmp_path: Path) -> None:
    ledger = Ledger(tmp_path / "run")
    ledger.file_made(tmp_path / "vol-1")
    ledger.loop_made("/dev/loop99", tmp_path / "vol-1")
    ledger.link_made(tmp_path / "link", "/dev/loop99")
    on_disk = json.loads(ledger.path.read_text())
    assert on_disk["loops"] == {"/dev/loop99": str(tmp_path / "vol-1")}
    assert on_disk["links"] == {str(tmp_path / "link"): "/dev/loop99"}
    assert on_disk["pid"] == os.getpid() and on_disk["start_time"] == process_start_time(os.getpid())
    ledger.close()
    assert ledger.path.exists()  # still lists things: kept for the next start
    ledger.loop_removed("/dev/loop99")
    ledger.link_removed(tmp_path / "link")
    ledger.file_removed(tmp_path / "vol-1")
    ledger.close()
    assert not ledger.path.exists()


def test_a_live_processs_ledger_is_never_reclaimed(tmp_path: Path) -> None:
    runtime = tmp_path / "run"
    ledger = Ledger(runtime)
    folder = tmp_path / "mine"
    folder.mkdir()
    ledger.folder_made(folder)
    assert reclaim(runtime) == []
    assert folder.is_dir() and ledger.path.exists()


@ROOT
def test_only_the_recorded_loop_device_of_a_dead_process_is_released(tmp_path: Path, loops: Loops) -> None:
    theirs, their_file = loops.make("vol-dead")
    decoy, decoy_file = loops.make("vol-decoy")  # looks just like theirs, but nobody recorded it
    link, stale_link = tmp_path / "by-id-theirs", tmp_path / "by-id-changed"
    link.symlink_to(theirs)
    stale_link.symlink_to(decoy)  # they pointed it elsewhere; someone changed it since
    folder = tmp_path / "their-folder"
    folder.mkdir()
    entry = write_ledger(
        tmp_path / "run",
        files=[their_file],
        loops={theirs: their_file},
        links={str(link): theirs, str(stale_link): "/dev/loop-they-had"},
        folders=[str(folder)],
    )
    [report] = reclaim(tmp_path / "run")
    assert report.released == {
        "loops": [theirs],
        "links": [str(link)],
        "files": [their_file],
        "folders": [str(folder)],
    }
    assert report.left == []
    backing = loop_backing_files()
    assert theirs not in backing or backing[theirs] != their_file
    assert backing[decoy] == decoy_file  # untouched
    assert stale_link.is_symlink() and not link.exists() and not folder.exists()
    assert not entry.exists()


@ROOT
def test_mounts_of_a_dead_processs_device_go_first_and_a_folder_with_a_mount_stays(
    tmp_path: Path, loops: Loops
) -> None:
    theirs, their_file = loops.make("vol-dead")
    run(["mkfs.ext4", "-q", "-F", theirs], 60)
    staged, published = tmp_path / "stage", tmp_path / "pod"
    staged.mkdir()
    published.mkdir()
    run(["mount", theirs, str(staged)], 30)
    run(["mount", "--bind", str(staged), str(published)], 30)
    decoy, _ = loops.make("vol-decoy")
    run(["mkfs.ext4", "-q", "-F", decoy], 60)
    kept = tmp_path / "their-folder"
    (kept / "in-use").mkdir(parents=True)
    run(["mount", decoy, str(kept / "in-use")], 30)  # not theirs: must not be unmounted nor deleted
    entry = write_ledger(tmp_path / "run", files=[their_file], folders=[str(kept)])
    [report] = reclaim(tmp_path / "run")
    assert report.released["mounts"] == [str(published), str(staged)]  # the bind mount first
    assert report.released["loops"] == [theirs]
    assert report.left == [f"{kept} still has 1 mount(s) below it ({kept}/in-use)"]
    assert entry.exists()  # something was left: tried again next time
    assert (kept / "in-use").is_dir()
    mounts = [line.split()[4] for line in Path("/proc/self/mountinfo").read_text().splitlines()]
    assert str(kept / "in-use") in mounts and str(staged) not in mounts
