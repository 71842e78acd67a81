"""The parity table: every documented aws-ebs-csi-driver class key and driver flag, with the EC2
request or node behaviour it must produce — run against the EC2 simulator and over the FakeCloud.

The documented keys are data (aws_ebs_csi_driver_keys.toml, which cites where each comes from); a key
there without a row here fails :func:`test_every_documented_key_has_a_row`. Each row drives the
controller (or node) core as the sidecars would and asserts on what EC2 was asked and now holds
(see harness.py), never on the driver's own answer alone. Rows with a bad value also prove that value
is INVALID_ARGUMENT naming the key (the gRPC code is checked end to end in test_parity_grpc.py).
"""

from __future__ import annotations

import argparse
import datetime
import logging
import tomllib
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

import pytest

from provisioner import params as P
from provisioner.cli import build_parser
from provisioner.cli.node import node_config
from provisioner.cli.serve import driver_config
from provisioner.errors import DeadlineExceeded, InvalidArgument
from provisioner.model import ContentSource, VolumeCapability
from provisioner.mount.linux import ext_args
from provisioner.node import NodeConfig, NodeCore, format_options
from provisioner.ports.node import NodeMetadata
from tests.controller.helpers import MOUNT_RWO
from tests.fakes.clock import FakeClock
from tests.fakes.mounter import FakeMounter, FakeResolver
from tests.parity.harness import ZONE, Harness, harness

KEYS_FILE = Path(__file__).with_name("aws_ebs_csi_driver_keys.toml")
BACKENDS = ("simulator", "fake cloud")
OUTPOST = "arn:aws:outposts:us-east-1:123456789012:outpost/op-1234567890abcdef0"
PVC = {
    "csi.storage.k8s.io/pvc/name": "data-0",
    "csi.storage.k8s.io/pvc/namespace": "ns-prod-team",
    "csi.storage.k8s.io/pv/name": "pvc-1234",
}
SNAP = {
    "csi.storage.k8s.io/volumesnapshot/name": "nightly",
    "csi.storage.k8s.io/volumesnapshot/namespace": "ns-prod-team",
    "csi.storage.k8s.io/volumesnapshotcontent/name": "snapcontent-77",
}


@dataclass(frozen=True)
class Row:
    check: Callable[[Harness], None]
    bad: str | None = None  # a value that must be INVALID_ARGUMENT naming the key
    extra: Mapping[str, str] | None = None  # other parameters the bad value needs beside it


# --- StorageClass rows --------------------------------------------------------------------------


def mkfs_args(h: Harness, parameters: Mapping[str, str], fs_type: str = "ext4") -> list[str]:
    """The node behaviour of a class: CreateVolume's volume_context, staged on a node, as mkfs args."""
    context = h.create(parameters, fs_type=fs_type).volume_context
    return ext_args(fs_type, format_options(fs_type, context))


def fstype_row(h: Harness) -> None:
    # external-provisioner turns the key into the capability's fs_type; the node formats with it.
    created = h.create({"csi.storage.k8s.io/fstype": "xfs"}, fs_type="xfs")
    assert not [k for k in h.last("CreateVolume") if "fstype" in k.lower()]  # not an EC2 matter
    mounter = FakeMounter()
    device = mounter.add_device("/dev/nvme1n1", 10 << 30)
    resolver = FakeResolver({created.volume_id: "/dev/nvme1n1"})
    node = NodeCore(mounter, resolver, NodeMetadata("i-0", ZONE), NodeConfig(), h.clock)
    xfs = VolumeCapability(MOUNT_RWO.access_type, MOUNT_RWO.access_mode, "xfs")
    node.stage(created.volume_id, "/stage", xfs, {}, created.volume_context)
    assert device.content == "xfs"


def type_row(h: Harness) -> None:
    h.create({"type": "gp2"})
    assert h.last("CreateVolume")["VolumeType"] == "gp2"


def iops_per_gb_row(h: Harness) -> None:
    h.create({"type": "io1", "iopsPerGB": "10"}, size_gib=20)
    assert h.last("CreateVolume")["Iops"] == "200"


def allow_iops_increase_row(h: Harness) -> None:
    h.create({"type": "io1", "iopsPerGB": "2", "allowAutoIOPSPerGBIncrease": "true"}, size_gib=10)
    assert h.last("CreateVolume")["Iops"] == "100"  # 20 raised to io1's minimum


def iops_row(h: Harness) -> None:
    h.create({"type": "gp3", "iops": "4000"})
    assert h.last("CreateVolume")["Iops"] == "4000"


def throughput_row(h: Harness) -> None:
    h.create({"throughput": "250"})
    assert h.last("CreateVolume")["Throughput"] == "250"


def encrypted_row(h: Harness) -> None:
    h.create({"encrypted": "true"})
    assert h.last("CreateVolume")["Encrypted"] == "true"


def block_express_row(h: Harness) -> None:
    h.create({"type": "io2", "blockExpress": "true", "iops": "100000"}, size_gib=200)
    request = h.last("CreateVolume")
    assert request["VolumeType"] == "io2" and request["Iops"] == "100000"  # io2 is Block Express anyway


def kms_row(h: Harness) -> None:
    key = "arn:aws:kms:us-east-1:123456789012:key/1234abcd-12ab-34cd-56ef-1234567890ab"
    h.create({"kmsKeyId": key})
    request = h.last("CreateVolume")
    assert request["KmsKeyId"] == key and request["Encrypted"] == "true"


def format_row(key: str, value: str, flag: list[str], extra: Mapping[str, str] | None = None) -> Row:
    def check(h: Harness) -> None:
        args = mkfs_args(h, {key: value, **(extra or {})})
        assert any(args[i : i + len(flag)] == flag for i in range(len(args))), args

    return Row(check, bad="-7" if value.isdigit() else "maybe", extra=extra)


def init_rate_row(h: Harness) -> None:
    restored = h.restored({"volumeInitializationRate": "200"})
    request = h.last("CreateVolume")
    assert request["VolumeInitializationRate"] == "200" and request["SnapshotId"]
    h.slow_initialization()
    assert h.initializing(restored.volume_id)
    blank = h.create({"volumeInitializationRate": "200"}, name="pvc-blank")
    assert "VolumeInitializationRate" not in h.last("CreateVolume")  # EC2 takes it with a snapshot only
    assert not h.initializing(blank.volume_id)


def block_attach_row(h: Harness) -> None:
    h.slow_initialization()
    restored = h.restored({"blockAttachUntilInitialized": "true", "volumeInitializationRate": "100"})
    node = h.instance()
    with pytest.raises(DeadlineExceeded, match="initializing"):  # ABORTED: the attacher retries
        h.publish(restored.volume_id, node, restored.volume_context, seconds=30)
    assert h.count("DescribeVolumeStatus") >= 2
    h.finish_initialization()
    assert h.publish(restored.volume_id, node, restored.volume_context, seconds=30)["devicePath"]
    # A blank volume of the same class never waits (nothing to load).
    blank = h.create({"blockAttachUntilInitialized": "true"}, name="pvc-blank")
    polls = h.count("DescribeVolumeStatus")
    h.publish(blank.volume_id, h.instance(), blank.volume_context, seconds=30)
    assert h.count("DescribeVolumeStatus") == polls


def auto_iops_on_modify_row(h: Harness) -> None:
    created = h.create({"type": "io2", "iopsPerGB": "50", "allowAutoIOPSIncreaseOnModify": "true"})
    assert h.last("CreateVolume")["Iops"] == "500"
    tags = h.tags(created.volume_id)
    assert tags["ebs.csi.aws.com/AllowAutoIOPSIncreaseOnModify"] == "true"
    assert tags["ebs.csi.aws.com/IOPSPerGb"] == "50"
    h.expand(created.volume_id, 30)
    request = h.last("ModifyVolume")
    assert request["Size"] == "30" and request["Iops"] == "1500"  # one ModifyVolume, IOPS with size


def tag_spec_row(h: Harness) -> None:
    h.create(
        {
            "tagSpecification_1": 'billing={{ .PVCNamespace | field "-" 1 | toUpper }}',
            "tagSpecification_2": 'backup={{ .PVCNamespace | contains "prod" }}',
            "tagSpecification_3": "pv={{ .PVName }}",
            "tagSpecification_4": "plain=hello world",
            **PVC,
        }
    )
    request = h.last("CreateVolume")
    assert request["tag:billing"] == "PROD" and request["tag:backup"] == "true"
    assert request["tag:pv"] == "pvc-1234" and request["tag:plain"] == "hello world"


def deprecated_fstype_row(h: Harness) -> None:
    h.create({"fsType": "ext4"})
    assert h.last("CreateVolume")["VolumeType"] == "gp3"  # accepted, no effect


def metadata_row(key: str, tag: str) -> Row:
    def check(h: Harness) -> None:
        h.create({key: PVC[key]})
        assert h.last("CreateVolume")[f"tag:{tag}"] == PVC[key]

    return Row(check)


# --- VolumeSnapshotClass rows ----------------------------------------------------------------------


def fsr_row(key: str = "fastSnapshotRestoreAvailabilityZones") -> Row:
    def check(h: Harness) -> None:
        volume = h.create({})
        snap = h.snapshot(volume.volume_id, {key: "us-east-1a, us-east-1b"})
        assert h.fast_restore_zones(snap.snapshot_id) == {"us-east-1a", "us-east-1b"}
        # EC2 refuses: the snapshot is deleted and the error returned (docs/snapshot.md, Failure Mode).
        h.refuse_next("EnableFastSnapshotRestores")
        with pytest.raises(InvalidArgument, match="was deleted"):
            h.snapshot(volume.volume_id, {key: "us-east-1b"}, name="snapcontent-2")
        assert h.count("DeleteSnapshot") == 1

    return Row(check, bad="us-west-2a")


def outpost_row(h: Harness) -> None:
    volume = h.create({})
    h.snapshot(volume.volume_id, {"outpostArn": OUTPOST})
    assert h.last("CreateSnapshot")["OutpostArn"] == OUTPOST


def lock_row(prefix: str, key: str) -> Row:
    def name(k: str) -> str:
        return prefix + k[0].upper() + k[1:] if prefix else k

    def check(h: Harness) -> None:
        volume = h.create({})
        cases = {
            "lockMode": ({"lockMode": "governance", "lockDuration": "7"}, "governance"),
            "lockDuration": ({"lockMode": "governance", "lockDuration": "7"}, "governance"),
            "lockExpirationDate": (
                {"lockMode": "compliance", "lockExpirationDate": "2030-12-31T23:59:59Z"},
                "compliance",
            ),
            "lockCoolOffPeriod": (
                {"lockMode": "compliance", "lockDuration": "1", "lockCoolOffPeriod": "24"},
                "compliance-cooloff",
            ),
        }
        parameters, state = cases[key]
        snap = h.snapshot(volume.volume_id, {name(k): v for k, v in parameters.items()})
        request = h.last("LockSnapshot")
        assert request["LockMode"] == parameters["lockMode"]
        if "lockDuration" in parameters:
            assert request["LockDuration"] == parameters["lockDuration"]
        if "lockCoolOffPeriod" in parameters:
            assert request["CoolOffPeriod"] == "24"
        if "lockExpirationDate" in parameters:
            assert request["ExpirationDate"] in ("2030-12-31T23:59:59Z", str(_epoch("2030-12-31T23:59:59Z")))
        assert h.lock_state(snap.snapshot_id) == state
        # A retry of the same CreateSnapshot finds it done: no second snapshot, no second lock.
        locks, creates = h.count("LockSnapshot"), h.count("CreateSnapshot")
        again = h.snapshot(volume.volume_id, {name(k): v for k, v in parameters.items()})
        assert again.snapshot_id == snap.snapshot_id
        assert (h.count("LockSnapshot"), h.count("CreateSnapshot")) == (locks, creates)
        # EC2 refuses the lock: the snapshot is deleted and the error returned (docs/snapshot.md).
        h.refuse_next("LockSnapshot")
        with pytest.raises(InvalidArgument, match="was deleted"):
            h.snapshot(volume.volume_id, {name(k): v for k, v in parameters.items()}, name="snapcontent-2")
        assert h.count("DeleteSnapshot") == 1 and h.count("CreateSnapshot") == creates + 1

    bad = {
        "lockMode": "strict",
        "lockDuration": "0",
        "lockExpirationDate": "tomorrow",
        "lockCoolOffPeriod": "100",
    }
    extra = {
        "lockMode": {name("lockDuration"): "7"},
        "lockDuration": {name("lockMode"): "governance"},
        "lockExpirationDate": {name("lockMode"): "governance"},
        "lockCoolOffPeriod": {name("lockMode"): "compliance", name("lockDuration"): "1"},
    }
    return Row(check, bad=bad[key], extra=extra[key])


def _epoch(text: str) -> float:
    return datetime.datetime.fromisoformat(text).timestamp()


def snap_tag_spec_row(h: Harness) -> None:
    volume = h.create({})
    parameters = {
        "tagSpecification_1": "ns={{ .VolumeSnapshotNamespace | substring 0 7 }}",
        "tagSpecification_2": "content={{ .VolumeSnapshotContentName }}",
        **SNAP,
    }
    snap = h.snapshot(volume.volume_id, parameters)
    assert h.last("CreateSnapshot")["tag:ns"] == "ns-prod"
    assert h.tags(snap.snapshot_id)["content"] == "snapcontent-77"


def snap_metadata_row(key: str, tag: str) -> Row:
    def check(h: Harness) -> None:
        volume = h.create({})
        snap = h.snapshot(volume.volume_id, {key: SNAP[key]})
        assert h.tags(snap.snapshot_id)[tag] == SNAP[key]

    return Row(check)


# --- VolumeAttributesClass rows (at creation and on modification) ----------------------------------


def vac_row(key: str, value: str, field: str, expect: str, bad: str) -> Row:
    def check(h: Harness) -> None:
        h.create({"type": "gp3"}, mutable={key: value}, name="pvc-vac")
        assert h.last("CreateVolume")[field] == expect
        created = h.create({"type": "gp3"})
        h.modify(created.volume_id, {key: value})
        assert h.last("ModifyVolume")[field] == expect

    return Row(check, bad=bad)


def vac_tags_row(h: Harness) -> None:
    mutable = {"tagSpecification_1": 'team={{ .PVCNamespace | field "-" 2 }}', **PVC}
    h.create({"tagSpecification_1": "team=unset", "tagSpecification_2": "keep=me", **PVC}, mutable=mutable)
    request = h.last("CreateVolume")
    assert request["tag:team"] == "team" and request["tag:keep"] == "me"  # VAC wins by tag key
    created = h.create({}, name="pvc-2")
    h.modify(created.volume_id, {"tagSpecification_1": "owner={{ .PVName }}", **PVC})
    assert h.tags(created.volume_id)["owner"] == "pvc-1234"


def vac_tag_deletion_row(h: Harness) -> None:
    created = h.create({"tagSpecification_1": "scratch=yes"})
    assert h.tags(created.volume_id)["scratch"] == "yes"
    h.modify(created.volume_id, {"tagDeletion_1": "scratch"})
    assert "scratch" not in h.tags(created.volume_id)


def vac_metadata_row(key: str) -> Row:
    def check(h: Harness) -> None:
        field = {source: name for name, source in P.VOLUME_FIELDS.items()}[key]
        created = h.create({})
        h.modify(created.volume_id, {"tagSpecification_9": f"from={{{{ .{field} }}}}", key: PVC[key]})
        assert h.tags(created.volume_id)["from"] == PVC[key]

    return Row(check)


# --- driver flags ---------------------------------------------------------------------------------


def flags(*argv: str) -> argparse.Namespace:
    return build_parser().parse_args(["controller", "--driver-name", "ebs.csi.aws.com", *argv])


def extra_tags_row(h: Harness) -> None:
    templates = "owner={{ .PVCNamespace }},env=prod,snap={{ .VolumeSnapshotName | toUpper }}"
    driver = driver_config(flags("--extra-tags", templates))
    volume = h.create(dict(PVC), driver=driver)
    request = h.last("CreateVolume")
    assert (request["tag:owner"], request["tag:env"], request["tag:snap"]) == ("ns-prod-team", "prod", "")
    snap = h.snapshot(volume.volume_id, dict(SNAP), driver=driver)
    tags = h.tags(snap.snapshot_id)
    assert (tags["owner"], tags["env"], tags["snap"]) == ("", "prod", "NIGHTLY")  # each object its own fields
    with pytest.raises(SystemExit):  # a template that names no field either kind has: refused at start
        flags("--extra-tags", "owner={{ .Owner }}")


def cluster_id_row(h: Harness) -> None:
    driver = driver_config(flags("--k8s-tag-cluster-id", "prod-1"))
    volume = h.create({}, name="pvc-9", driver=driver)
    request = h.last("CreateVolume")
    assert request["tag:kubernetes.io/cluster/prod-1"] == "owned"
    assert request["tag:Name"] == "prod-1-dynamic-pvc-9" and request["tag:KubernetesCluster"] == "prod-1"
    assert request["tag:ebs.csi.aws.com/cluster-name"] == "prod-1"
    snap = h.snapshot(volume.volume_id, {}, name="snapcontent-9", driver=driver)
    tags = h.tags(snap.snapshot_id)
    assert tags["kubernetes.io/cluster/prod-1"] == "owned" and tags["Name"] == "prod-1-dynamic-snapcontent-9"


def node_limit(*argv: str) -> int:
    args = build_parser().parse_args(["node", "--node-id", "i-0", "--zone", ZONE, *argv])
    metadata = NodeMetadata("i-0", ZONE, "m5.large", block_device_count=2, eni_count=1)
    core = NodeCore(FakeMounter(), FakeResolver({}), metadata, node_config(args), FakeClock())
    return core.get_info().max_volumes_per_node


def attach_limit_row(h: Harness) -> None:
    assert node_limit("--volume-attach-limit", "12") == 12
    assert node_limit("--volume-attach-limit", "12", "--reserved-volume-attachments", "5") == 12


def reserved_row(h: Harness) -> None:
    assert node_limit() == 28 - 1 - 2  # m5.large: 28 shared slots − 1 ENI − 2 devices at boot
    assert node_limit("--reserved-volume-attachments", "5") == 28 - 1 - 5


# --- the table ------------------------------------------------------------------------------------

LOCK_KEYS = ("lockMode", "lockDuration", "lockExpirationDate", "lockCoolOffPeriod")

TABLE: dict[tuple[str, str], Row] = {
    ("storage_class", "csi.storage.k8s.io/fstype"): Row(fstype_row),
    ("storage_class", "type"): Row(type_row, bad="gp9"),
    ("storage_class", "iopsPerGB"): Row(iops_per_gb_row, bad="ten", extra={"type": "io1"}),
    ("storage_class", "allowAutoIOPSPerGBIncrease"): Row(allow_iops_increase_row, bad="maybe"),
    ("storage_class", "iops"): Row(iops_row, bad="-1"),
    ("storage_class", "throughput"): Row(throughput_row, bad="fast"),
    ("storage_class", "encrypted"): Row(encrypted_row, bad="yes please"),
    ("storage_class", "blockExpress"): Row(block_express_row),
    ("storage_class", "kmsKeyId"): Row(kms_row),
    ("storage_class", "blockSize"): format_row("blockSize", "4096", ["-b", "4096"]),
    ("storage_class", "inodeSize"): format_row("inodeSize", "512", ["-I", "512"]),
    ("storage_class", "bytesPerInode"): format_row("bytesPerInode", "16384", ["-i", "16384"]),
    ("storage_class", "numberOfInodes"): format_row("numberOfInodes", "1000", ["-N", "1000"]),
    ("storage_class", "ext4BigAlloc"): format_row("ext4BigAlloc", "true", ["-O", "bigalloc"]),
    ("storage_class", "ext4ClusterSize"): format_row(
        "ext4ClusterSize", "16384", ["-C", "16384"], extra={"ext4BigAlloc": "true"}
    ),
    ("storage_class", "ext4EncryptionSupport"): format_row(
        "ext4EncryptionSupport", "true", ["-O", "encrypt"]
    ),
    ("storage_class", "volumeInitializationRate"): Row(init_rate_row, bad="1000"),
    ("storage_class", "blockAttachUntilInitialized"): Row(block_attach_row, bad="perhaps"),
    ("storage_class", "allowAutoIOPSIncreaseOnModify"): Row(auto_iops_on_modify_row, bad="nope"),
    ("storage_class", "tagSpecification_N"): Row(tag_spec_row, bad="owner={{ .Owner }}"),
    ("storage_class", "fsType"): Row(deprecated_fstype_row),
    ("storage_class", "csi.storage.k8s.io/pvc/name"): metadata_row(
        "csi.storage.k8s.io/pvc/name", "kubernetes.io/created-for/pvc/name"
    ),
    ("storage_class", "csi.storage.k8s.io/pvc/namespace"): metadata_row(
        "csi.storage.k8s.io/pvc/namespace", "kubernetes.io/created-for/pvc/namespace"
    ),
    ("storage_class", "csi.storage.k8s.io/pv/name"): metadata_row(
        "csi.storage.k8s.io/pv/name", "kubernetes.io/created-for/pv/name"
    ),
    ("volume_snapshot_class", "fastSnapshotRestoreAvailabilityZones"): fsr_row(),
    ("volume_snapshot_class", "outpostArn"): Row(outpost_row, bad="not-an-arn"),
    **{("volume_snapshot_class", k): lock_row("", k) for k in LOCK_KEYS},
    **{
        ("volume_snapshot_class", "snapshot" + k[0].upper() + k[1:]): lock_row("snapshot", k)
        for k in LOCK_KEYS
    },
    ("volume_snapshot_class", "tagSpecification_N"): Row(snap_tag_spec_row, bad="pvc={{ .PVCName }}"),
    **{
        ("volume_snapshot_class", key): snap_metadata_row(
            key, "kubernetes.io/created-for/" + key.split("/", 1)[1]
        )
        for key in SNAP
    },
    ("volume_attributes_class", "type"): vac_row("type", "gp2", "VolumeType", "gp2", bad="gp9"),
    ("volume_attributes_class", "volumeType"): vac_row(
        "volumeType", "standard", "VolumeType", "standard", bad="gp9"
    ),
    ("volume_attributes_class", "iops"): vac_row("iops", "5000", "Iops", "5000", bad="many"),
    ("volume_attributes_class", "throughput"): vac_row("throughput", "300", "Throughput", "300", bad="0"),
    ("volume_attributes_class", "tagSpecification_N"): Row(vac_tags_row, bad="x={{ .Unknown }}"),
    ("volume_attributes_class", "tagDeletion_N"): Row(vac_tag_deletion_row, bad=" "),
    **{("volume_attributes_class", key): vac_metadata_row(key) for key in PVC},
    ("driver_flags", "--extra-tags"): Row(extra_tags_row),
    ("driver_flags", "--k8s-tag-cluster-id"): Row(cluster_id_row),
    ("driver_flags", "--volume-attach-limit"): Row(attach_limit_row),
    ("driver_flags", "--reserved-volume-attachments"): Row(reserved_row),
}


def documented() -> list[tuple[str, str]]:
    data = tomllib.loads(KEYS_FILE.read_text())
    kinds = ("storage_class", "volume_snapshot_class", "volume_attributes_class", "driver_flags")
    return [(kind, key) for kind in kinds for key in data[kind]["keys"]]


def test_every_documented_key_has_a_row() -> None:
    rows = {(kind, key.lower()) for kind, key in TABLE}
    missing = [f"{kind}: {key}" for kind, key in documented() if (kind, key.lower()) not in rows]
    assert not missing, f"documented aws-ebs-csi-driver keys without a parity row: {missing}"
    assert len(documented()) == len(TABLE)  # and no row for a key nobody documented


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize(("kind", "key"), list(TABLE), ids=[f"{k}:{n}" for k, n in TABLE])
def test_key_behaves_as_documented(kind: str, key: str, backend: str) -> None:
    TABLE[(kind, key)].check(harness(backend))


BAD = [(kind, key) for (kind, key), row in TABLE.items() if row.bad is not None]


def bad_call(h: Harness, kind: str, key: str, row: Row) -> None:
    """The call a bad ``key`` value reaches, with the key spelled in another case (keys are
    case-insensitive)."""
    name = key.replace("_N", "_1").upper() if kind != "driver_flags" else key
    assert row.bad is not None
    parameters = {**(row.extra or {}), name: row.bad}
    if kind == "storage_class":
        h.create(parameters)
    elif kind == "volume_snapshot_class":
        h.snapshot(h.create({}).volume_id, parameters)
    else:
        h.modify(h.create({}).volume_id, parameters)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize(("kind", "key"), BAD, ids=[f"{k}:{n}" for k, n in BAD])
def test_bad_value_is_invalid_argument_naming_the_key(kind: str, key: str, backend: str) -> None:
    h = harness(backend)
    with pytest.raises(InvalidArgument) as caught:
        bad_call(h, kind, key, TABLE[(kind, key)])
    assert key.replace("_N", "_1").lower() in caught.value.message.lower()


@pytest.mark.parametrize("key", ["blockExpress", "fsType"])
def test_deprecated_keys_are_one_log_line(key: str, caplog: pytest.LogCaptureFixture) -> None:
    h = harness("fake cloud")
    with caplog.at_level(logging.INFO):
        h.create({key: "true"})
    lines = [r.getMessage() for r in caplog.records if "deprecated" in r.getMessage()]
    assert lines == [f"volume pvc-1: parameter {key} is deprecated and has no effect"]


def test_restore_rows_use_a_snapshot() -> None:
    """The restore rows really restore: the volume names its source snapshot."""
    h = harness("simulator")
    restored = h.restored({})
    assert restored.content_source == ContentSource(h.last("CreateVolume")["SnapshotId"])
