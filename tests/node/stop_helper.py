"""A node plugin whose mkfs hangs, run as its own process by test_commands.py to prove what happens to
a running command when the plugin is stopped (SIGTERM) or killed (SIGKILL).

``python -m tests.node.stop_helper SOCKET PIDFILE``: serves the Node service on SOCKET; NodeStageVolume
runs ``sh -c 'echo $$ > PIDFILE; exec sleep 120'`` as its "mkfs" through the real command runner.
"""

from __future__ import annotations

import sys

from provisioner.config import ServerConfig
from provisioner.csi.identity import IdentityService
from provisioner.csi.node_service import NodeService
from provisioner.csi.server import Services, serve_until_signalled, start_server
from provisioner.model import GIB
from provisioner.mount.commands import kill_all, run
from provisioner.node import NodeConfig, NodeCore
from provisioner.ports.node import FormatOptions, NodeMetadata
from tests.fakes.clock import FakeClock
from tests.fakes.mounter import FakeMounter, FakeResolver

VOL = "vol-0123456789abcdef0"


class SlowMkfs(FakeMounter):
    """A mounter whose mkfs is a real command (through the real runner) that takes minutes; it
    writes its pid to ``pidfile`` first."""

    pidfile: str = "/nonexistent"

    def format(self, device: str, fs_type: str, options: FormatOptions, force: bool = False) -> None:
        run(["sh", "-c", f"echo $$ > {self.pidfile}; exec sleep 120"], 300)
        super().format(device, fs_type, options, force)


def slow_node(pidfile: str) -> tuple[Services, SlowMkfs, NodeCore]:
    """Identity + Node over a SlowMkfs with one volume (VOL) and a staging directory (/stage)."""
    mounter = SlowMkfs()
    mounter.pidfile = pidfile
    mounter.add_device("/dev/nvme1n1", GIB, serial=VOL.replace("-", ""))
    mounter.add_dirs("/stage")
    core = NodeCore(
        mounter,
        FakeResolver({VOL: "/dev/nvme1n1"}, mounter),
        NodeMetadata(instance_id="i-0abc", zone="us-east-1a"),
        NodeConfig(),
        FakeClock(),
    )
    identity = IdentityService("zonal.csi.dev", "0", controller=False)
    return Services(identity=identity, node=NodeService(core)), mounter, core


def main(socket: str, pidfile: str) -> None:
    services, _, _ = slow_node(pidfile)
    server = start_server(ServerConfig(endpoint=f"unix://{socket}", mode="node"), services)
    print("serving", flush=True)
    serve_until_signalled(server, grace=10.0, on_signal=kill_all)


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
