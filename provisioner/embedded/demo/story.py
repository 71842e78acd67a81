"""``zonal demo``: the whole zone story on one machine, no AWS account and no cluster.

It starts an embedded EC2 (the simulator), an in-memory cluster with three nodes in three zones,
``zonal all`` on a unix socket and the provisioner loop, then plays the part of the scheduler, the PV
controller, the attacher and the kubelet around them, printing what each component decides:

* default (WaitForFirstConsumer): a claim waits; a pod is scheduled to the node in the second zone;
  the claim gets ``selected-node``; the requirements sent to CreateVolume; the EBS volume created in
  that zone; the PV and its nodeAffinity; attach, stage and mount on a loop device, a file written and
  read back; then cleanup (root is needed for the loop device; without it the story stops after the PV).
* ``--immediate``: an Immediate class with allowedTopologies and a StatefulSet's three claims spread
  round-robin over the allowed zones.
* ``--relocate``: the WaitForFirstConsumer story, then the nodes of the volume's zone are gone;
  ``zonal doctor`` finds the claim at risk, ``zonal relocate`` moves it to another zone, and the pod
  reads its file back there (see :mod:`.relocation`).
* ``--keep``: leave everything running (socket, cluster served over HTTP with a kubeconfig, EC2 served
  over HTTP) until Ctrl-C, for ``zonal csi``, ``zonal explain``, ``zonal doctor`` and ``zonal relocate``
  from another shell; the environment they need is printed and written to ``<dir>/env``.
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import threading
import uuid
from collections.abc import Callable, Mapping
from pathlib import Path
from types import FrameType
from typing import Any

import grpc
import yaml

from provisioner import __version__
from provisioner.config import DEFAULT_DRIVER_NAME, ControllerConfig, DriverConfig, ServerConfig
from provisioner.controller import ControllerCore
from provisioner.csi._proto import csi_pb2, csi_pb2_grpc
from provisioner.csi.client import GrpcCsiClient
from provisioner.csi.controller_service import ControllerService
from provisioner.csi.identity import IdentityService
from provisioner.csi.node_service import NodeService
from provisioner.csi.server import CsiServer, Services, start_server
from provisioner.embedded import cloud as embedded_cli
from provisioner.embedded.demo.support import (
    PodVolume,
    RecordingCsi,
    demo_folder,
    mount_source,
    unmount_below,
)
from provisioner.embedded.demo.support import node_core as node_core_for
from provisioner.embedded.demo.ui import StepFailed, Ui
from provisioner.embedded.kube.controllers import PvController
from provisioner.embedded.kube.fakeapi import FakeApiServer, kubeconfig_for
from provisioner.embedded.kube.memory import MemoryKube
from provisioner.embedded.ledger import Ledger, start
from provisioner.errors import NotFound
from provisioner.model import EBS_ZONE_KEY, ZONE_KEY, VolumeState
from provisioner.ports.clock import SystemClock
from provisioner.ports.csi import CreatedVolume, CreateVolumeRequest, CsiClient
from provisioner.ports.kube import Kind, Obj
from provisioner.provisioning import ProvisionerConfig
from provisioner.provisioning.loop import ProvisionerLoop, discover_driver

log = logging.getLogger("zonal.demo")

REGION = "us-east-1"
ZONES = ("us-east-1a", "us-east-1b", "us-east-1c")
NODES = ("node-a", "node-b", "node-c")
POD_NODE = 1  # the scheduler's pick: the node in the second zone
ANN_SELECTED_NODE = "volume.kubernetes.io/selected-node"
ANN_STORAGE_PROVISIONER = "volume.kubernetes.io/storage-provisioner"


def segment_text(segment: Mapping[str, str]) -> str:
    """A topology segment as people write it: ``{topology.kubernetes.io/zone=us-east-1a}``."""
    return "{" + ", ".join(f"{k}={v}" for k, v in sorted(segment.items())) + "}"


class Demo:
    def __init__(self, ui: Ui, folder: Path, ledger: Ledger | None = None) -> None:
        self.ui = ui
        self.folder = folder
        self.ledger = ledger
        self.socket = folder / "csi.sock"
        self.cleanups: list[tuple[str, Callable[[], None]]] = []
        self.kube = MemoryKube()
        self.driver = DEFAULT_DRIVER_NAME
        self.instances: dict[str, str] = {}  # node name → instance id
        self.emb: embedded_cli.EmbeddedCloud | None = None
        self.server: CsiServer | None = None
        self.csi: RecordingCsi | None = None
        self.loop: ProvisionerLoop | None = None
        self.channel: grpc.Channel | None = None
        self.root = os.geteuid() == 0

    # --- set-up -------------------------------------------------------------------------------------------

    def start(self) -> None:
        ui = self.ui
        ui.step(f"Embedded EC2 in {REGION} with zones {', '.join(ZONES)}")
        emb = embedded_cli.build_embedded(
            REGION,
            ZONES,
            ZONES[POD_NODE],
            state_dir=str(self.folder / "ebs"),
            back_devices=self.root,
            ledger=self.ledger,
        )
        self.emb = emb
        self.cleanups.append(("embedded EC2", emb.close))
        for i, name in enumerate(NODES):
            iid = emb.node.instance_id if i == POD_NODE else emb.simulator.create_instance(ZONES[i])
            self.instances[name] = iid
        ui.ok("instances: " + ", ".join(f"{n}={self.instances[n]} ({ZONES[i]})" for i, n in enumerate(NODES)))

        ui.step(f"zonal all on unix://{self.socket} (driver {self.driver})")
        core = ControllerCore(
            emb.cloud, SystemClock(), DriverConfig(self.driver, __version__), ControllerConfig()
        )
        node_core = node_core_for(emb.node, emb.state_dir, self.folder / "node-state", log)
        identity = IdentityService(self.driver, __version__, controller=True, probe=core.probe)
        self.server = start_server(
            ServerConfig(endpoint=f"unix://{self.socket}", mode="all", max_workers=64),
            Services(identity=identity, controller=ControllerService(core), node=NodeService(node_core)),
        )
        self.cleanups.append(("CSI server", lambda: self.server.stop(1) if self.server else None))
        self.channel = grpc.insecure_channel(self.server.address)
        grpc.channel_ready_future(self.channel).result(timeout=10)
        info = csi_pb2_grpc.NodeStub(self.channel).NodeGetInfo(csi_pb2.NodeGetInfoRequest(), timeout=10)
        segs = ", ".join(f"{k}={v}" for k, v in sorted(info.accessible_topology.segments.items()))
        ui.ok(f"NodeGetInfo on {NODES[POD_NODE]}: node_id={info.node_id}, topology {{{segs}}}")

        ui.step("In-memory cluster: three nodes in three zones, each running the driver")
        for i, name in enumerate(NODES):
            labels = {
                ZONE_KEY: ZONES[i],
                EBS_ZONE_KEY: ZONES[i],
                "node.kubernetes.io/instance-type": "m5.large",
            }
            self.kube.create(Kind.NODE, {"metadata": {"name": name, "labels": labels}})
            self.kube.create(
                Kind.CSINODE,
                {
                    "metadata": {"name": name},
                    "spec": {
                        "drivers": [
                            {
                                "name": self.driver,
                                "nodeID": self.instances[name],
                                "topologyKeys": sorted(info.accessible_topology.segments),
                            }
                        ]
                    },
                },
            )
            ui.info(f"{name}  {ZONE_KEY}={ZONES[i]}")
        self.cleanups.append(("PV controller", PvController(self.kube).run().stop))
        ui.ok("CSINode objects list the topology keys the driver reports; the PV controller's rules run")

        ui.step("Provisioner loop (zonal's topology-aware external provisioner)")
        self.csi = RecordingCsi(GrpcCsiClient(f"unix://{self.socket}", timeout=30))
        self.cleanups.append(("CSI client", self.csi.inner.close))
        client: CsiClient = self.csi
        facts = discover_driver(client, SystemClock(), threading.Event())
        config = ProvisionerConfig(
            csi_address=f"unix://{self.socket}", worker_threads=4, retry_interval_start=0.2, timeout=30
        )
        self.loop = ProvisionerLoop(self.kube, client, config, facts)
        self.loop.start(sync_timeout=10)
        self.cleanups.append(("provisioner loop", self.loop.stop))
        ui.ok(f"driver {facts.name} can create volumes; watching claims")

    # --- helpers ------------------------------------------------------------------------------------------

    def storage_class(self, name: str, binding: str, allowed: tuple[str, ...] = ()) -> None:
        sc: Obj = {
            "metadata": {"name": name},
            "provisioner": self.driver,
            "volumeBindingMode": binding,
            "reclaimPolicy": "Delete",
            "parameters": {"type": "gp3"},
        }
        if allowed:
            sc["allowedTopologies"] = [
                {"matchLabelExpressions": [{"key": ZONE_KEY, "values": list(allowed)}]}
            ]
        self.kube.create(Kind.STORAGE_CLASS, sc)
        shown: dict[str, Any] = {k: sc[k] for k in ("provisioner", "volumeBindingMode", "parameters")}
        if allowed:
            shown["allowedTopologies"] = sc["allowedTopologies"]
        self.ui.block(yaml.safe_dump({"name": name, **shown}, sort_keys=False))

    def claim(self, name: str, sc: str, node: str = "") -> Obj:
        ann = {ANN_STORAGE_PROVISIONER: self.driver}
        if node:
            ann[ANN_SELECTED_NODE] = node
        obj: Obj = {
            "metadata": {"name": name, "namespace": "default", "uid": str(uuid.uuid4()), "annotations": ann},
            "spec": {
                "accessModes": ["ReadWriteOnce"],
                "storageClassName": sc,
                "resources": {"requests": {"storage": "1Gi"}},
                "volumeMode": "Filesystem",
            },
            "status": {"phase": "Pending"},
        }
        return self.kube.create(Kind.CLAIM, obj)

    def pv_for(self, claim_name: str) -> Obj | None:
        for pv in self.kube.list(Kind.PV).items:
            ref = pv.get("spec", {}).get("claimRef", {})
            if ref.get("name") == claim_name and ref.get("namespace") == "default":
                return pv
        return None

    def sent_for(self, claim: Obj) -> tuple[CreateVolumeRequest, CreatedVolume] | None:
        uid = claim["metadata"]["uid"]
        assert self.csi is not None
        for request, answer in self.csi.created:
            if uid in request.name:
                return request, answer
        return None

    def _sent(self, claim: Obj) -> Callable[[], tuple[CreateVolumeRequest, CreatedVolume] | None]:
        return lambda: self.sent_for(claim)

    def _pv(self, claim_name: str) -> Callable[[], Obj | None]:
        return lambda: self.pv_for(claim_name)

    def show_requirements(self, request: CreateVolumeRequest) -> None:
        req = request.requirement
        if req is None:
            self.ui.info("accessibility_requirements: none")
            return

        self.ui.info("accessibility_requirements sent to CreateVolume:")
        for label, segments in (("requisite", req.requisite), ("preferred", req.preferred)):
            self.ui.info(f"  {label}:")
            for i, s in enumerate(segments):
                self.ui.info(f"    [{i}] {segment_text(s)}")

    def ebs_zone(self, volume_id: str) -> str:
        assert self.emb is not None
        return self.emb.cloud.get_volume(volume_id).zone

    def bind(self, claim: Obj, pv: Obj) -> None:
        """What the PV controller does in a real cluster: bind claim and volume."""
        meta = claim["metadata"]
        self.kube.patch(
            Kind.CLAIM,
            meta["name"],
            "default",
            {"spec": {"volumeName": pv["metadata"]["name"]}, "status": {"phase": "Bound"}},
        )
        self.kube.patch(Kind.PV, pv["metadata"]["name"], "", {"status": {"phase": "Bound"}})

    def release_and_wait(self, claim_name: str, pv: Obj) -> None:
        """Delete the claim; as the PV controller would, mark the PV Released; the loop deletes the volume."""
        volume_id = pv["spec"]["csi"]["volumeHandle"]
        self.kube.delete(Kind.CLAIM, claim_name, "default")
        self.kube.patch(Kind.PV, pv["metadata"]["name"], "", {"status": {"phase": "Released"}})

        def gone() -> bool | None:
            try:
                self.kube.get(Kind.PV, pv["metadata"]["name"])
                return None
            except NotFound:
                pass
            try:
                state = self.emb.cloud.get_volume(volume_id).state if self.emb else None
            except NotFound:
                return True
            return True if state in (VolumeState.DELETED, VolumeState.DELETING) else None

        self.ui.wait_for(f"reclaim policy Delete: DeleteVolume {volume_id}, then the PV goes", gone, 60)
        self.ui.ok(f"PV {pv['metadata']['name']} and EBS volume {volume_id} deleted")

    # --- the stories --------------------------------------------------------------------------------------

    def wffc(self, keep: bool) -> None:
        ui = self.ui
        ui.title("WaitForFirstConsumer: the volume follows the pod")
        ui.step("StorageClass zonal-gp3 and claim default/data")
        self.storage_class("zonal-gp3", "WaitForFirstConsumer")
        claim = self.claim("data", "zonal-gp3")
        threading.Event().wait(1.5)
        if self.sent_for(claim) is not None:
            raise StepFailed("the provisioner created a volume before any pod needed the claim")
        ui.ok("claim is Pending: waiting for first consumer to be created before binding (no volume yet)")

        node = NODES[POD_NODE]
        ui.step(f"Pod web-0 is scheduled to {node} ({ZONES[POD_NODE]}); the scheduler sets selected-node")
        self.kube.patch(
            Kind.CLAIM, "data", "default", {"metadata": {"annotations": {ANN_SELECTED_NODE: node}}}
        )
        ui.ok(f"claim default/data: {ANN_SELECTED_NODE}={node}")

        ui.step("The provisioner turns the node's topology into requirements and calls CreateVolume")
        request, answer = ui.wait_for("waiting for CreateVolume", lambda: self.sent_for(claim), 60)
        self.show_requirements(request)
        zone = self.ebs_zone(answer.volume_id)
        topo = ", ".join(f"{k}={v}" for s in answer.accessible_topology for k, v in sorted(s.items()))
        ui.info(f"CreateVolume answered {answer.volume_id}, accessible_topology {{{topo}}}")
        if zone != ZONES[POD_NODE]:
            raise StepFailed(f"EC2 says {answer.volume_id} is in {zone}, not {ZONES[POD_NODE]}")
        ui.ok(f"EBS volume {answer.volume_id} created in {zone} (as EC2 reports it)")

        ui.step("The PersistentVolume, pinned to that zone by nodeAffinity")
        pv = ui.wait_for("waiting for the PV", lambda: self.pv_for("data"), 30)
        ui.block(yaml.safe_dump({"nodeAffinity": pv["spec"].get("nodeAffinity")}, sort_keys=False))
        terms = pv["spec"]["nodeAffinity"]["required"]["nodeSelectorTerms"]
        values = {v for t in terms for e in t["matchExpressions"] for v in e["values"]}
        if values != {zone}:
            raise StepFailed(f"the PV's nodeAffinity names {sorted(values)}, not {zone}")
        self.bind(self.kube.get(Kind.CLAIM, "data", "default"), pv)
        ui.ok(f"PV {pv['metadata']['name']} bound to default/data; every later pod lands in {zone}")

        volume_id = answer.volume_id
        if not self.root:
            ui.note(
                "not root: skipping attach, mkfs and mount (loop devices need root); run with sudo for them"
            )
        else:
            self.mount_and_use(volume_id, node)
        if keep:
            return
        ui.step("Cleanup: the claim is deleted")
        self.release_and_wait("data", self.kube.get(Kind.PV, pv["metadata"]["name"]))

    def mount_and_use(self, volume_id: str, node: str) -> None:
        """Pod web-0 on ``node``: attach, mkfs and mount, write a file and read it back, then go away."""
        ui = self.ui
        assert self.channel is not None
        instance = self.instances[node]
        pod = PodVolume(
            self.channel,
            self.channel,
            volume_id,
            instance,
            self.folder / "staging",
            self.folder / "pods" / "web-0" / "data",
        )
        ui.step(f"ControllerPublishVolume: attach {volume_id} to {instance} ({node})")
        context = pod.attach()
        assert self.emb is not None and self.emb.hooks is not None
        device = self.emb.hooks.devices.get(volume_id, "?")
        ui.ok(f"attached as {context.get('devicePath', '?')}; backed here by {device}")

        ui.step("NodeStageVolume + NodePublishVolume: mkfs.ext4, mount, bind-mount into the pod")
        pod.mount(context)
        ui.ok(f"{pod.target} is mounted from {mount_source(str(pod.target))}")

        ui.step("The pod writes a file and reads it back")
        message = f"hello from {node} in {ZONES[POD_NODE]}\n"
        (pod.target / "hello.txt").write_text(message)
        back = (pod.target / "hello.txt").read_text()
        if back != message:
            raise StepFailed(f"read back {back!r}, wrote {message!r}")
        ui.ok(f"wrote and read {pod.target / 'hello.txt'}: “{back.strip()}”")

        ui.step("The pod goes away: unpublish, unstage, detach")
        if not pod.release():
            raise StepFailed("a mount was left behind")
        ui.ok("unmounted and detached; the loop device is released (the data stays on the volume)")

    def immediate(self, keep: bool) -> None:
        ui = self.ui
        allowed = (ZONES[0], ZONES[2])
        ui.title("Immediate binding: allowedTopologies and a StatefulSet spread")
        ui.step(f"StorageClass zonal-immediate allowing {', '.join(allowed)}")
        self.storage_class("zonal-immediate", "Immediate", allowed)
        ui.step("StatefulSet web with 3 replicas: claims data-web-0, data-web-1, data-web-2")
        claims = [self.claim(f"data-web-{i}", "zonal-immediate") for i in range(3)]
        zones: list[str] = []
        for c in claims:
            name = c["metadata"]["name"]
            request, answer = ui.wait_for(f"waiting for CreateVolume of {name}", self._sent(c), 60)
            zone = self.ebs_zone(answer.volume_id)
            first = (
                segment_text(request.requirement.preferred[0])
                if request.requirement and request.requirement.preferred
                else "none"
            )
            ui.info(f"{name}: preferred first {first} → {answer.volume_id} in {zone}")
            if zone not in allowed:
                raise StepFailed(f"{name} landed in {zone}, outside allowedTopologies {allowed}")
            zones.append(zone)
        ui.ok(f"replicas spread over the allowed zones: {', '.join(zones)} (FNV hash of the name + ordinal)")
        pvs = [ui.wait_for("waiting for PVs", self._pv(c["metadata"]["name"]), 30) for c in claims]
        ui.ok(f"{len(pvs)} PVs, each pinned to its volume's zone")
        if keep:
            return
        ui.step("Cleanup: the StatefulSet's claims are deleted")
        for c, pv in zip(claims, pvs, strict=True):
            self.release_and_wait(c["metadata"]["name"], pv)

    def keep_running(self) -> None:
        """Serve the cluster (HTTP fake API) and EC2 (the simulator over HTTP) on 127.0.0.1 until Ctrl-C,
        and print what another shell needs to reach them."""
        from provisioner.embedded.ec2 import SimServer

        assert self.emb is not None
        api = FakeApiServer(self.kube).start()
        self.cleanups.append(("fake API server", api.stop))
        ec2 = SimServer(self.emb.simulator).start()
        self.cleanups.append(("EC2 server", ec2.stop))
        kubeconfig = self.folder / "kubeconfig"
        kubeconfig.write_text(kubeconfig_for(api.url))
        env = {
            "KUBECONFIG": str(kubeconfig),
            "AWS_ENDPOINT_URL_EC2": ec2.endpoint_url,
            "AWS_REGION": REGION,
            "AWS_ACCESS_KEY_ID": "zonal-demo",
            "AWS_SECRET_ACCESS_KEY": "zonal-demo",
        }
        env_file = self.folder / "env"
        env_file.write_text("".join(f"export {k}={v}\n" for k, v in env.items()))
        # From here a stop signal ends the wait below (exit 0), even while the instructions print.
        stop = threading.Event()
        previous = {
            s: signal.signal(s, lambda *_: stop.set()) for s in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
        }
        ui = self.ui
        ui.title("Left running for exploration (Ctrl-C to clean up and stop)")
        ui.info(f"In another shell, first: . {env_file}   (it exports the following)")
        ui.info("export " + " ".join(f"{k}={v}" for k, v in env.items()))
        for command, what in (
            ("zonal explain pvc default/data", "the EBS zone as EC2 reports it"),
            ("zonal doctor", "every zone problem of the cluster"),
            (f"zonal relocate pvc default/data --to-zone {ZONES[2]}", "move the data to another zone"),
        ):
            ui.info(f"{command:<55} # {what}")
        ui.info(f"zonal csi --endpoint unix://{self.socket} list-volumes")
        ui.info("kubectl get pv -o yaml")
        try:
            stop.wait()
        finally:
            for s, h in previous.items():
                signal.signal(s, h)

    def close(self) -> None:
        if self.channel is not None:
            self.channel.close()
        for name, cleanup in reversed(self.cleanups):
            try:
                cleanup()
            except Exception:
                log.exception("cleanup of %s failed", name)
        unmount_below(self.folder)


def _interrupted(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt(signal.Signals(signum).name)  # unwinds through every cleanup below


def run(args: argparse.Namespace) -> int:
    if args.verbosity == 0:
        # The story is told by the steps; the components' own logs only with -v.
        logging.getLogger("zonal").setLevel(logging.WARNING)
    # A closed terminal (SIGHUP) or a kill (SIGTERM) stops the demo like Ctrl-C: everything it made is
    # released. What a kill -9 leaves, the next demo or embedded start releases (the ledger).
    previous = {s: signal.signal(s, _interrupted) for s in (signal.SIGTERM, signal.SIGHUP)}
    try:
        ledger = start(args.runtime_dir)
        try:
            return _run(args, ledger)
        finally:
            ledger.close()
    finally:
        for s, h in previous.items():
            signal.signal(s, h)


def _run(args: argparse.Namespace, ledger: Ledger) -> int:
    ui = Ui()
    with demo_folder(args.dir, ledger) as folder:
        ui.title(f"zonal {__version__} demo — topology-aware EBS provisioning, on this machine")
        demo = Demo(ui, folder, ledger)
        try:
            demo.start()
            if args.immediate:
                demo.immediate(args.keep)
            elif args.relocate:
                from provisioner.embedded.demo.relocation import RelocationStory  # it builds on this module

                demo.wffc(keep=True)
                RelocationStory(demo).run(args.keep)
            else:
                demo.wffc(args.keep)
            if args.keep:
                demo.keep_running()
            ui.title(f"All {ui.steps} steps passed.")
            return 0
        except StepFailed as e:
            ui.fail(str(e))
            return 1
        except grpc.RpcError as e:
            ui.fail(f"{e.code().name}: {e.details()}")
            return 1
        except Exception as e:
            log.exception("demo step failed")
            ui.fail(f"{type(e).__name__}: {e}")
            return 1
        finally:
            demo.close()
