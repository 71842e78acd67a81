"""LinkingHooks (root only): the simulated EC2 backs and releases a volume's loop device even when the
RPC that called into it in-process has no time left, as EC2 finishes an attach its caller gave up on.
Every loop device is released, even when a test fails."""

from __future__ import annotations

import os
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest

from provisioner.embedded.cloud import LinkingHooks
from provisioner.embedded.loopback import LoopBacker
from provisioner.ports.clock import Deadline, deadline_scope
from tests.fakes.clock import FakeClock

pytestmark = [
    pytest.mark.root,
    pytest.mark.skipif(os.geteuid() != 0, reason="needs root: attaches loop devices"),
]

VOL = "vol-0aa11bb22cc33dd55"


@pytest.fixture
def backer(tmp_path: Path) -> Iterator[LoopBacker]:
    backer = LoopBacker(tmp_path / "state")
    try:
        yield backer
    finally:
        backer.release(VOL)


def test_attach_and_detach_outlive_the_callers_deadline(backer: LoopBacker, tmp_path: Path) -> None:
    hooks = LinkingHooks(backer, dev_root=str(tmp_path / "dev"))
    spent = Deadline(FakeClock(), 0.0)  # the ControllerPublishVolume's caller already gave up
    with deadline_scope(spent):
        hooks.attached(VOL, "i-0123456789abcdef0", "/dev/xvdaa", 1)
    link = hooks.link(VOL)
    assert link.is_symlink()
    device = os.readlink(link)
    assert stat.S_ISBLK(os.stat(device).st_mode) and hooks.devices[VOL] == device
    with deadline_scope(spent):
        hooks.detached(VOL, "i-0123456789abcdef0")
    assert not link.is_symlink() and VOL not in hooks.devices
