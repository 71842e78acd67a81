"""An embedded world for relocation tests: the EC2 simulator on a fake clock, the in-memory cluster with
the PV controller's rules, and claims provisioned by the real loop core through the real controller core.

The clock drives everything: each ``sleep`` of a waiting core advances the simulator's lifecycles and
runs one pass of the PV controller, so a test never sleeps and never races a thread.
"""

from __future__ import annotations

import random
from collections.abc import Mapping
from dataclasses import dataclass, field

from provisioner.aws.ec2 import Ec2Cloud
from provisioner.config import ControllerConfig, DriverConfig
from provisioner.controller import ControllerCore
from provisioner.embedded.ec2 import Delays, SimConfig, Simulator, VolumeHooks
from provisioner.embedded.kube.controllers import PvController
from provisioner.embedded.kube.memory import MemoryKube
from provisioner.model import EBS_ZONE_KEY, TAG_ZONAL_DRIVER, ZONE_KEY, Snapshot, TopologyRequirement, Volume
from provisioner.ports.clock import Clock
from provisioner.ports.csi import (
    ControllerCapability,
    CreatedVolume,
    CreateVolumeRequest,
    PluginCapability,
    PluginInfo,
)
from provisioner.ports.kube import Kind, Obj
from provisioner.provisioning.core import ProvisionerCore, Step
from provisioner.provisioning.settings import ProvisionerConfig
from provisioner.relocate.core import RelocateSettings, Relocator
from provisioner.relocate.journal import TAG_RELOCATION
from provisioner.relocate.report import Reporter
from tests.fakes.clock import FakeClock
from tests.provisioner.conftest import DirectLister

DRIVER = "zonal.csi.dev"
ZONES = ("us-east-1a", "us-east-1b", "us-east-1c")
NODES = ("node-a", "node-b", "node-c")


class SyncClock(FakeClock):
    """A fake clock whose sleeps also run the PV controller once (what time does in a real cluster)."""

    def __init__(self) -> None:
        super().__init__()
        self.controllers: list[PvController] = []

    def sleep(self, seconds: float) -> None:
        super().sleep(seconds)
        for controller in self.controllers:
            controller.sync()


class CoreCsi:
    """The CsiClient port answered in process by the controller core (the driver's real CreateVolume)."""

    plugin_caps = frozenset(
        {PluginCapability.CONTROLLER_SERVICE, PluginCapability.VOLUME_ACCESSIBILITY_CONSTRAINTS}
    )
    controller_caps = frozenset({ControllerCapability.CREATE_DELETE_VOLUME})

    def __init__(self, core: ControllerCore) -> None:
        self.core = core

    def probe(self) -> bool:
        return True

    def plugin_info(self) -> PluginInfo:
        return PluginInfo(DRIVER, "test")

    def plugin_capabilities(self) -> frozenset[PluginCapability]:
        return self.plugin_caps

    def controller_capabilities(self) -> frozenset[ControllerCapability]:
        return self.controller_caps

    def create_volume(self, request: CreateVolumeRequest) -> CreatedVolume:
        made = self.core.create_volume(
            request.name,
            request.capacity,
            request.capabilities,
            request.parameters,
            {},
            request.requirement or TopologyRequirement(),
            request.content_source,
            None,
        )
        return CreatedVolume(
            made.volume_id, made.capacity_bytes, made.volume_context, made.accessible_topology
        )

    def delete_volume(self, volume_id: str, secrets: Mapping[str, str] | None = None) -> None:
        self.core.delete_volume(volume_id)


@dataclass
class World:
    clock: Clock
    sim: Simulator
    cloud: Ec2Cloud
    kube: MemoryKube
    binder: PvController
    instances: dict[str, str] = field(default_factory=dict)

    def advance(self, seconds: float) -> None:
        """Move the fake clock (EC2's transitions happen on it)."""
        assert isinstance(self.clock, FakeClock)
        self.clock.advance(seconds)

    def relocator(self, reporter: Reporter | None = None, **settings: float) -> Relocator:
        return Relocator(
            self.kube, self.cloud, self.clock, DriverConfig(DRIVER), RelocateSettings(**settings), reporter
        )

    def volumes(self) -> list[Volume]:
        """The driver's EBS volumes that are not deleted (instances' root volumes left out)."""
        found = self.cloud.describe_volumes(self._all_volume_ids())
        return sorted(
            (
                v
                for v in found.values()
                if v.tags.get(TAG_ZONAL_DRIVER) == DRIVER and v.state.value != "deleted"
            ),
            key=lambda v: v.volume_id,
        )

    def _all_volume_ids(self) -> list[str]:
        client = self.cloud._ec2
        return [v["VolumeId"] for v in client.describe_volumes()["Volumes"]]

    def relocation_snapshots(self) -> list[Snapshot]:
        client = self.cloud._ec2
        raw = client.describe_snapshots(OwnerIds=["self"])["Snapshots"]
        ids = [s["SnapshotId"] for s in raw]
        snaps = [self.cloud.get_snapshot(i) for i in ids]
        return [s for s in snaps if TAG_RELOCATION in s.tags]

    def claim(self, name: str = "data") -> Obj:
        return self.kube.get(Kind.CLAIM, name, "default")


def make_world(
    hooks: VolumeHooks | None = None, delays: Delays | None = None, clock: Clock | None = None
) -> World:
    """Three zones, a node running the driver in each, a WaitForFirstConsumer gp3 class. With the default
    clock (a :class:`SyncClock`) the PV controller runs on every sleep; with another, call
    ``world.binder.run()``."""
    clock = clock or SyncClock()
    sim = Simulator(
        SimConfig(zones=ZONES, throttling=False, delays=delays or Delays(volume_create=2.0, snapshot=10.0)),
        clock=clock,
        hooks=hooks,
    )
    cloud = Ec2Cloud(sim.client(), sim.region)
    kube = MemoryKube()
    binder = PvController(kube)
    if isinstance(clock, SyncClock):
        clock.controllers.append(binder)
    world = World(clock, sim, cloud, kube, binder)
    for zone, name in zip(ZONES, NODES, strict=True):
        instance = sim.create_instance(zone)
        world.instances[name] = instance
        labels = {ZONE_KEY: zone, EBS_ZONE_KEY: zone}
        kube.create(
            Kind.NODE,
            {
                "metadata": {"name": name, "labels": labels},
                "spec": {"providerID": f"aws:///{zone}/{instance}"},
            },
        )
        kube.create(
            Kind.CSINODE,
            {
                "metadata": {"name": name},
                "spec": {
                    "drivers": [
                        {"name": DRIVER, "nodeID": instance, "topologyKeys": [EBS_ZONE_KEY, ZONE_KEY]}
                    ]
                },
            },
        )
    kube.create(
        Kind.STORAGE_CLASS,
        {
            "metadata": {"name": "gp3"},
            "provisioner": DRIVER,
            "volumeBindingMode": "WaitForFirstConsumer",
            "reclaimPolicy": "Delete",
            "parameters": {"type": "gp3", "tagSpecification_1": "team=storage"},
        },
    )
    return world


def provision(world: World, name: str = "data", node: str = "node-b", size: str = "4Gi") -> tuple[Obj, Obj]:
    """A claim provisioned for a pod on ``node`` by the real loop and controller cores, then Bound."""
    claim: Obj = {
        "metadata": {
            "name": name,
            "namespace": "default",
            "labels": {"app": "web"},
            "annotations": {
                "volume.kubernetes.io/storage-provisioner": DRIVER,
                "volume.kubernetes.io/selected-node": node,
                "team.example.com/owner": "storage",
            },
        },
        "spec": {
            "accessModes": ["ReadWriteOnce"],
            "storageClassName": "gp3",
            "resources": {"requests": {"storage": size}},
            "volumeMode": "Filesystem",
        },
    }
    world.kube.create(Kind.CLAIM, claim)
    controller = ControllerCore(
        world.cloud,
        world.clock,
        DriverConfig(DRIVER, cluster_id="test-cluster"),
        ControllerConfig(wait_initial_delay=0.5),
    )
    csi = CoreCsi(controller)
    loop = ProvisionerCore(
        world.kube,
        csi,
        DirectLister(world.kube),
        ProvisionerConfig(),
        driver=DRIVER,
        plugin_caps=csi.plugin_caps,
        controller_caps=csi.controller_caps,
        clock=world.clock,
        rng=random.Random(1),
    )
    outcome = loop.provision(world.kube.get(Kind.CLAIM, name, "default"))
    assert outcome.step is Step.DONE, outcome
    world.binder.sync()
    bound = world.kube.get(Kind.CLAIM, name, "default")
    assert bound["status"]["phase"] == "Bound", bound
    return bound, world.kube.get(Kind.PV, bound["spec"]["volumeName"])
