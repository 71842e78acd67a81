"""``zonal demo --relocate``: a volume stuck in a zone whose nodes are gone, found and moved.

After the WaitForFirstConsumer story (a file written on the claim's volume in the second zone), the only
node of that zone is drained and deleted. ``zonal doctor``'s core finds the claim at risk and names the
remedy; ``zonal relocate``'s core checks, plans and runs the move with every step and EC2's snapshot
progress printed; the pod is scheduled to a node of the new zone, whose own node plugin (a second CSI
server, as a real node would run) attaches, mounts and reads the file back; then the source volume and
the snapshot are deleted on request. It drives the same cores the CLI runs, in this process.
"""

from __future__ import annotations

import logging

import grpc
import yaml

from provisioner import __version__
from provisioner.config import DriverConfig, ServerConfig
from provisioner.csi.identity import IdentityService
from provisioner.csi.node_service import NodeService
from provisioner.csi.server import Services, start_server
from provisioner.doctor import run_doctor
from provisioner.doctor.findings import CLAIM_AT_RISK
from provisioner.embedded.demo import story
from provisioner.embedded.demo.support import PodVolume, mount_source, node_core
from provisioner.embedded.demo.ui import StepFailed, Ui
from provisioner.errors import NotFound
from provisioner.model import VolumeState
from provisioner.ports.clock import SystemClock
from provisioner.ports.kube import Kind
from provisioner.ports.node import NodeMetadata
from provisioner.relocate.core import RelocateSettings, Relocator
from provisioner.relocate.plan import make_plan

log = logging.getLogger("zonal.demo")

TARGET = 2  # the zone (and node) the data moves to


class UiReporter:
    """The relocation's Reporter on the demo's screen; EC2's progress in steps of a quarter."""

    def __init__(self, ui: Ui) -> None:
        self.ui = ui
        self.shown = -1

    def step(self, name: str, text: str) -> None:
        self.ui.info(f"» {name}: {text}")

    def detail(self, text: str) -> None:
        self.ui.info(f"    {text}")

    def progress(self, text: str, percent: int) -> None:
        if percent // 25 == self.shown // 25 and percent < 100:
            return
        self.shown = percent
        bar = "#" * (percent * 20 // 100)
        self.ui.info(f"    {text} [{bar:<20}] {percent:3d}%")


class RelocationStory:
    def __init__(self, demo: story.Demo) -> None:
        self.demo = demo
        self.ui = demo.ui

    def run(self, keep: bool) -> None:
        demo, ui, kube = self.demo, self.ui, self.demo.kube
        assert demo.emb is not None
        cloud = demo.emb.cloud
        gone, target = story.NODES[story.POD_NODE], story.NODES[TARGET]
        old_zone, new_zone = story.ZONES[story.POD_NODE], story.ZONES[TARGET]
        ui.title(f"The nodes of {old_zone} are gone: find the stuck volume, move it, read the file back")
        ui.step(f"{gone}, the only node in {old_zone}, is drained and deleted")
        kube.delete(Kind.NODE, gone)
        kube.delete(Kind.CSINODE, gone)
        ui.ok(f"no node is left in {old_zone}; claim default/data is still Bound to a volume there")

        ui.step("zonal doctor")
        report = run_doctor(kube, demo.driver, cloud)
        for f in report.findings:
            ui.info(f"{f.severity.value} {f.code}: {', '.join(f.objects)}")
            ui.info(f"  why:    {f.why}")
            ui.info(f"  remedy: {f.remedy}")
        if CLAIM_AT_RISK not in [f.code for f in report.findings]:
            raise StepFailed("zonal doctor did not find the claim at risk")
        ui.ok(f"{report.ec2}; exit status {report.exit_status()}")

        ui.step(f"zonal relocate pvc default/data --to-zone {new_zone}: the checks")
        settings = RelocateSettings(poll=0.25, poll_max=1.0, snapshot_timeout=120, kube_timeout=60)
        driver = DriverConfig(demo.driver, __version__)
        rel = Relocator(kube, cloud, SystemClock(), driver, settings, UiReporter(ui))
        plan, _ = make_plan(kube, cloud, driver, "default", "data", new_zone)
        for check in plan.checks:
            ui.info(f"{check.level:<4} {check.name}: {check.text}")
        if not plan.ok:
            raise StepFailed("the relocation's checks failed")
        ui.ok("every check passed; nothing has changed yet")

        ui.step("The relocation, each step journaled on the source PV before and after it acts")
        outcome = rel.start(plan)
        j = outcome.journal
        where = cloud.get_volume(j.volume_id).zone
        ui.ok(f"claim default/data is Bound to PV {j.new_pv}: {j.volume_id} in {where} (as EC2 reports it)")

        ui.step(f"Pod web-0 is scheduled to {target} ({new_zone}), the only zone the new PV allows")
        pv = kube.get(Kind.PV, j.new_pv)
        ui.block(yaml.safe_dump({"nodeAffinity": pv["spec"]["nodeAffinity"]}, sort_keys=False))
        if demo.root:
            self.read_back(j.volume_id, target, new_zone, old_zone)
        else:
            ui.note(
                "not root: skipping attach, mount and read (loop devices need root); run with sudo for them"
            )

        ui.step(
            "The data is checked: zonal relocate pvc default/data --resume --delete-source --delete-snapshot"
        )
        rel.resume("default", "data", delete_source=True, delete_snapshot=True)
        try:
            state = cloud.get_volume(j.source_volume).state
        except NotFound:
            state = VolumeState.DELETED
        if state not in (VolumeState.DELETED, VolumeState.DELETING) or kube.find(Kind.PV, j.source_pv):
            raise StepFailed(f"the source volume {j.source_volume} or PV {j.source_pv} is still there")
        ui.ok(f"source volume {j.source_volume}, PV {j.source_pv} and snapshot {j.snapshot_id} deleted")
        if keep:
            return
        ui.step("Cleanup: the claim is deleted")
        demo.release_and_wait("data", kube.get(Kind.PV, j.new_pv))

    def read_back(self, volume_id: str, node: str, zone: str, old_zone: str) -> None:
        demo, ui = self.demo, self.ui
        assert demo.channel is not None
        channel = self.node_plugin(node, zone)
        pod = PodVolume(
            demo.channel,
            channel,
            volume_id,
            demo.instances[node],
            demo.folder / f"staging-{node}",
            demo.folder / "pods" / f"web-0-{node}" / "data",
        )
        context = pod.attach()  # EC2 attaches only within the volume's zone
        pod.mount(context)
        text = (pod.target / "hello.txt").read_text()
        expected = f"hello from {story.NODES[story.POD_NODE]} in {old_zone}\n"
        if text != expected:
            raise StepFailed(f"read {text!r} in {zone}, expected {expected!r}")
        ui.ok(f"{node}'s node plugin mounted it from {mount_source(str(pod.target))}; read “{text.strip()}”")
        if not pod.release():
            raise StepFailed("a mount was left behind")

    def node_plugin(self, node: str, zone: str) -> grpc.Channel:
        """The node plugin of ``node``: a CSI server with the node service, as ``zonal node`` runs there."""
        demo = self.demo
        assert demo.emb is not None
        metadata = NodeMetadata(
            instance_id=demo.instances[node],
            zone=zone,
            instance_type="m5.large",
            region=story.REGION,
            source="embedded",
        )
        core = node_core(metadata, demo.emb.state_dir, demo.folder / f"{node}-state", log)
        server = start_server(
            ServerConfig(endpoint=f"unix://{demo.folder / (node + '.sock')}", mode="node", max_workers=8),
            Services(
                identity=IdentityService(demo.driver, __version__, controller=False), node=NodeService(core)
            ),
        )
        demo.cleanups.append((f"{node} CSI server", lambda: server.stop(1)))
        channel = grpc.insecure_channel(server.address)
        demo.cleanups.append((f"{node} channel", channel.close))
        grpc.channel_ready_future(channel).result(timeout=10)
        return channel
