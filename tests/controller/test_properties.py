"""Property-based: generated requests for every Identity and Controller RPC, over real gRPC on a unix
socket, against the EC2 simulator in this process.

For every request (well-formed, malformed, hostile: NUL and control characters, over-long strings,
unknown enum values, numbers that are not, ids of every shape, raw bytes that are no message at all):

* the answer is OK or one of the codes the CSI spec documents for that RPC (table below), never
  INTERNAL or UNKNOWN, with a status message of at most 1 KiB;
* the server still answers Probe;
* EC2 stays consistent: a CreateVolume/CreateSnapshot that fails leaves EC2's volumes/snapshots as
  they were, one that succeeds made exactly what it reports (found in EC2 by id, tagged with the
  name), and ListVolumes answers OK listing every volume zonal owns in EC2's full state.

Examples per RPC: ``ZONAL_PROPERTY_EXAMPLES`` (default 25), so the suite stays well under a minute.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import grpc
import pytest
from google.protobuf.message import Message
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from provisioner.csi._proto import csi_pb2
from provisioner.model import GIB, TAG_DRIVER, TAG_SNAPSHOT_NAME, TAG_VOLUME_NAME, TAG_ZONAL_DRIVER, ZONE_KEY
from tests.controller.simgrpc import ZONES, World, sim_world

C = grpc.StatusCode
EXAMPLES = int(os.environ.get("ZONAL_PROPERTY_EXAMPLES", "25"))
PROPERTY = settings(
    max_examples=EXAMPLES,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.filter_too_much],
)

# CSI's error tables (shared/csi/error-codes.md): the general rows (INVALID_ARGUMENT; ABORTED for an
# operation pending) plus each RPC's own rows. PERMISSION_DENIED and UNAUTHENTICATED never arise from
# the simulator. Where zonal uses a code the table does not list, the row says why.
GENERAL = {C.INVALID_ARGUMENT, C.ABORTED}
ALLOWED: dict[str, set[grpc.StatusCode]] = {
    "GetPluginInfo": set(),
    "GetPluginCapabilities": set(),
    "Probe": set(),
    "ControllerGetCapabilities": set(),
    "GetCapacity": {C.UNIMPLEMENTED},  # not advertised: "Call not implemented"
    "CreateVolume": GENERAL | {C.NOT_FOUND, C.ALREADY_EXISTS, C.RESOURCE_EXHAUSTED, C.OUT_OF_RANGE},
    "DeleteVolume": GENERAL | {C.FAILED_PRECONDITION},
    "ControllerPublishVolume": GENERAL
    | {C.NOT_FOUND, C.ALREADY_EXISTS, C.FAILED_PRECONDITION, C.RESOURCE_EXHAUSTED},
    "ControllerUnpublishVolume": GENERAL | {C.NOT_FOUND},
    "ValidateVolumeCapabilities": GENERAL | {C.NOT_FOUND},
    "ListVolumes": GENERAL,
    "ControllerGetVolume": GENERAL | {C.NOT_FOUND},
    # A source volume that does not exist: NOT_FOUND, as CreateVolume's "source does not exist".
    "CreateSnapshot": GENERAL | {C.ALREADY_EXISTS, C.RESOURCE_EXHAUSTED, C.NOT_FOUND},
    "DeleteSnapshot": GENERAL | {C.FAILED_PRECONDITION},
    "ListSnapshots": GENERAL,
    "GetSnapshot": GENERAL | {C.NOT_FOUND},
    "ControllerExpandVolume": GENERAL | {C.NOT_FOUND, C.FAILED_PRECONDITION, C.OUT_OF_RANGE},
    "ControllerModifyVolume": GENERAL | {C.NOT_FOUND},
}
NEVER = {C.INTERNAL, C.UNKNOWN}


@dataclass
class Pool:
    """Ids of things that exist, so generated requests hit real objects as often as junk."""

    volumes: list[str]
    snapshots: list[str]
    nodes: list[str]


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    with sim_world(tmp_path_factory.mktemp("properties")) as world:
        yield world


@pytest.fixture(scope="module")
def pool(world: World) -> Pool:
    ctl = world.stubs.controller
    volumes = []
    for zone in ZONES:
        request = csi_pb2.CreateVolumeRequest(name=f"pool-{zone}", volume_capabilities=[_rwo()])
        request.capacity_range.required_bytes = GIB
        request.accessibility_requirements.requisite.add().segments[ZONE_KEY] = zone
        volumes.append(ctl.CreateVolume(request, timeout=30).volume.volume_id)
    volumes.append(world.make_volume({}))  # a static PV
    volumes.append(world.make_volume({TAG_VOLUME_NAME: "by-aws", TAG_DRIVER: "true"}))  # aws-ebs-csi-driver's
    snapshots = [
        ctl.CreateSnapshot(
            csi_pb2.CreateSnapshotRequest(name="pool-snap", source_volume_id=volumes[0])
        ).snapshot.snapshot_id,
        world.make_snapshot(volumes[3], {}),
        world.make_snapshot(volumes[4], {TAG_SNAPSHOT_NAME: "by-aws", TAG_DRIVER: "true"}),
    ]
    return Pool(volumes, snapshots, [world.node, *world.others.values()])


# Strings: ordinary, hostile (NUL, C0/C1 controls, U+FFFE), long, and very long.
_hostile = st.text(alphabet=st.characters(max_codepoint=0xA0), max_size=12)
_unicode = st.text(alphabet=st.characters(codec="utf-8"), max_size=24)
TEXT = st.one_of(
    st.just(""),
    st.from_regex(r"[a-z0-9-]{1,20}", fullmatch=True),
    _hostile,
    _unicode,
    st.integers(100, 300).map(lambda n: "x" * n),
    st.just("vol-" + "a" * 10_000),
    st.just("\x00"),
)


def ids(prefix: str, existing: list[str]) -> st.SearchStrategy[str]:
    return st.one_of(
        st.sampled_from(existing),
        st.from_regex(rf"{prefix}-[0-9a-f]{{17}}", fullmatch=True),
        st.from_regex(rf"{prefix}-[0-9a-fA-Z]{{0,20}}", fullmatch=True),
        TEXT,
    )


PARAM_KEYS = [
    "type", "Type", "iops", "iopsPerGB", "allowAutoIOPSPerGBIncrease", "throughput", "encrypted",
    "kmsKeyId", "tagSpecification_1", "tagSpecification_2", "tagDeletion_1", "blockSize", "inodeSize",
    "bytesPerInode", "numberOfInodes", "ext4BigAlloc", "ext4ClusterSize", "csi.storage.k8s.io/fstype",
    "csi.storage.k8s.io/pvc/name", "csi.storage.k8s.io/volumesnapshot/name",
]  # fmt: skip
PARAM_VALUES = st.one_of(
    st.sampled_from(
        ["gp3", "io2", "gp2", "st1", "true", "false", "3000", "4000", "125", "4096", "k=v", "a=b=c"]
    ),
    st.integers(-(2**40), 2**40).map(str),
    st.sampled_from(["1e3", "1_000", "١٢٣", " 42 ", "0x10", "NaN", "4096.0"]),
    TEXT,
)
PARAMS = st.dictionaries(st.one_of(st.sampled_from(PARAM_KEYS), TEXT), PARAM_VALUES, max_size=4)


def _rwo() -> csi_pb2.VolumeCapability:
    return csi_pb2.VolumeCapability(
        mount=csi_pb2.VolumeCapability.MountVolume(fs_type="ext4"),
        access_mode=csi_pb2.VolumeCapability.AccessMode(mode=1),  # type: ignore[arg-type]
    )


@st.composite
def capability(draw: st.DrawFn) -> csi_pb2.VolumeCapability:
    cap = csi_pb2.VolumeCapability()
    kind = draw(st.sampled_from(["mount", "block", "none", "mount"]))
    if kind == "mount":
        cap.mount.fs_type = draw(st.one_of(st.sampled_from(["", "ext4", "xfs"]), TEXT))
        cap.mount.mount_flags.extend(draw(st.lists(TEXT, max_size=3)))
        cap.mount.volume_mount_group = draw(st.one_of(st.just(""), TEXT))
    elif kind == "block":
        cap.block.SetInParent()
    if draw(st.booleans()) or draw(st.booleans()):
        cap.access_mode.mode = draw(st.integers(0, 9))  # type: ignore[assignment]  # open enum: 8, 9 unknown
    return cap


CAPABILITIES = st.lists(capability(), max_size=3)
CAPACITY = st.one_of(
    st.none(),
    st.builds(
        lambda r, lim: csi_pb2.CapacityRange(required_bytes=r, limit_bytes=lim),
        st.one_of(st.integers(-(2**63), 2**63 - 1), st.integers(0, 64 * GIB)),
        st.one_of(st.just(0), st.integers(-(2**63), 2**63 - 1), st.integers(0, 64 * GIB)),
    ),
)
ZONE_VALUES = st.one_of(st.sampled_from([*ZONES, "us-east-1z", "use1-az1", "eu-west-1a"]), TEXT)
SEGMENT = st.dictionaries(
    st.one_of(
        st.sampled_from(
            [
                ZONE_KEY,
                "topology.ebs.csi.aws.com/zone",
                "failure-domain.beta.kubernetes.io/zone",
                "topology.k8s.aws/zone-id",
            ]
        ),
        TEXT,
    ),
    ZONE_VALUES,
    max_size=2,
)


@st.composite
def requirement(draw: st.DrawFn) -> csi_pb2.TopologyRequirement | None:
    if draw(st.booleans()):
        return None
    return csi_pb2.TopologyRequirement(
        requisite=[csi_pb2.Topology(segments=s) for s in draw(st.lists(SEGMENT, max_size=3))],
        preferred=[csi_pb2.Topology(segments=s) for s in draw(st.lists(SEGMENT, max_size=2))],
    )


# Calling, and the invariants.


def call(world: World, rpc: str, request: Message) -> tuple[grpc.StatusCode, Any]:
    stub = (
        world.stubs.identity
        if rpc in ("GetPluginInfo", "GetPluginCapabilities", "Probe")
        else world.stubs.controller
    )
    try:
        response = getattr(stub, rpc)(request, timeout=30)
        event(f"{rpc}: OK")
        return C.OK, response
    except grpc.RpcError as e:
        error: Any = e
        code, details = error.code(), error.details() or ""
        event(f"{rpc}: {code.name}")
        assert code not in NEVER, f"{rpc} answered {code.name}: {details}"
        assert code in ALLOWED[rpc], f"{rpc} answered {code.name}, not a code CSI documents for it: {details}"
        assert len(details.encode()) <= 1024, f"{rpc}: a {len(details)}-character status message"
        return code, None


def still_healthy(world: World) -> None:
    assert world.stubs.identity.Probe(csi_pb2.ProbeRequest(), timeout=10).ready.value
    listed = {
        e.volume.volume_id for e in world.stubs.controller.ListVolumes(csi_pb2.ListVolumesRequest()).entries
    }
    owned = {
        v
        for v, raw in world.volumes().items()
        if _tags(raw).get(TAG_ZONAL_DRIVER) == world.core.driver.driver_name
    }
    missing = owned - listed
    assert not missing, f"volumes zonal made but ListVolumes does not report: {missing}"


def _tags(raw: dict[str, Any]) -> dict[str, str]:
    return {t["Key"]: t["Value"] for t in raw.get("Tags", [])}


def check(world: World, rpc: str, request: Message) -> tuple[grpc.StatusCode, Any]:
    code, response = call(world, rpc, request)
    still_healthy(world)
    return code, response


# One property per RPC.


@given(
    st.sampled_from(
        ["GetPluginInfo", "GetPluginCapabilities", "Probe", "ControllerGetCapabilities", "GetCapacity"]
    )
)
@PROPERTY
def test_requests_without_inputs(world: World, rpc: str) -> None:
    request = getattr(csi_pb2, f"{rpc}Request")()
    code, _ = check(world, rpc, request)
    assert code in (C.OK, C.UNIMPLEMENTED)


GOOD_PARAMS = st.fixed_dictionaries(
    {},
    optional={
        "type": st.sampled_from(["gp3", "gp2", "io1", "io2", "st1", "sc1", "standard", "GP3"]),
        "iops": st.sampled_from(["3000", "4000", "100", "64000"]),
        "throughput": st.sampled_from(["125", "250"]),
        "encrypted": st.sampled_from(["true", "false"]),
        "tagSpecification_1": st.sampled_from(["team=storage", "cost-center=42"]),
        "csi.storage.k8s.io/pvc/name": st.from_regex(r"data-[a-z]{1,8}", fullmatch=True),
        "blockSize": st.sampled_from(["1024", "4096"]),
    },
)
GOOD_TOPOLOGY = st.builds(
    lambda zones: csi_pb2.TopologyRequirement(
        requisite=[csi_pb2.Topology(segments={ZONE_KEY: z}) for z in zones]
    ),
    st.lists(st.sampled_from(ZONES), min_size=1, max_size=3, unique=True),
)
MUTABLE: list[dict[str, str]] = [
    {},
    {"iops": "4000"},
    {"iops": "5000", "throughput": "250"},
    {"type": "gp2"},
    {"type": "gp3"},
    {"tagSpecification_1": "tier=gold"},
    {"tagDeletion_1": "tier"},
]
# Which field of an otherwise sensible request gets a generated (often hostile) value: none half the time.
SPOILED = st.sampled_from(
    [
        None,
        None,
        None,
        None,
        None,
        "name",
        "capabilities",
        "parameters",
        "mutable",
        "topology",
        "capacity",
        "source",
    ]
)


@given(spoiled=SPOILED, data=st.data())
@PROPERTY
def test_create_volume(world: World, pool: Pool, spoiled: str | None, data: st.DataObject) -> None:
    name = data.draw(TEXT if spoiled == "name" else st.from_regex(r"pvc-[a-z0-9]{1,12}", fullmatch=True))
    request = csi_pb2.CreateVolumeRequest(name=name)
    request.volume_capabilities.extend(data.draw(CAPABILITIES) if spoiled == "capabilities" else [_rwo()])
    request.parameters.update(data.draw(PARAMS if spoiled == "parameters" else GOOD_PARAMS))
    if spoiled == "mutable":
        request.mutable_parameters.update(data.draw(PARAMS))
    topology = data.draw(requirement() if spoiled == "topology" else st.one_of(st.none(), GOOD_TOPOLOGY))
    if topology is not None:
        request.accessibility_requirements.CopyFrom(topology)
    capacity = data.draw(
        CAPACITY
        if spoiled == "capacity"
        else st.integers(1, 200).map(lambda g: csi_pb2.CapacityRange(required_bytes=g * GIB))
    )
    if capacity is not None:
        request.capacity_range.CopyFrom(capacity)
    source = data.draw(
        st.sampled_from(
            ["snapshot", "volume"] if spoiled == "source" else ["none", "none", "snapshot", "volume"]
        )
    )
    if source == "snapshot":
        request.volume_content_source.snapshot.snapshot_id = data.draw(ids("snap", pool.snapshots))
    elif source == "volume":
        request.volume_content_source.volume.volume_id = data.draw(ids("vol", pool.volumes))
    before = world.volumes()
    code, response = check(world, "CreateVolume", request)
    after = world.volumes()
    if code != C.OK:
        # A clone that failed after its intermediate snapshot: still no volume.
        assert set(after) == set(before), "a failed CreateVolume must leave EC2's volumes as they were"
        return
    volume = response.volume
    assert volume.volume_id in after, "CreateVolume answered with a volume EC2 does not have"
    assert _tags(after[volume.volume_id])[TAG_VOLUME_NAME] == name
    assert len(set(after) - set(before)) <= 1
    zone = after[volume.volume_id]["AvailabilityZone"]
    assert [dict(t.segments) for t in volume.accessible_topology] == [{ZONE_KEY: zone}]
    again, response = call(world, "CreateVolume", request)  # CSI: the same request again → the same volume
    assert again == C.OK and response.volume.volume_id == volume.volume_id


class Spoil:
    """Draws each field of a request: the sensible value, or — for the one field chosen to be spoiled,
    about every other request — a generated one (often hostile)."""

    def __init__(self, data: st.DataObject, fields: list[str]) -> None:
        self.data = data
        self.field = data.draw(st.sampled_from([*([None] * len(fields)), *fields]))

    def __call__(self, field: str, good: st.SearchStrategy[Any], bad: st.SearchStrategy[Any]) -> Any:
        return self.data.draw(bad if self.field == field else good)


def existing(items: list[str]) -> st.SearchStrategy[str]:
    return st.sampled_from(items)


NO_MAP: st.SearchStrategy[dict[str, str]] = st.just({})


@given(data=st.data())
@PROPERTY
def test_publish_and_unpublish(world: World, pool: Pool, data: st.DataObject) -> None:
    spoil = Spoil(data, ["volume", "node", "capability", "context", "unpublish"])
    # The pool's first volume and first node are both in us-east-1a: those attach.
    volume_id = spoil("volume", st.sampled_from([pool.volumes[0], *pool.volumes]), ids("vol", pool.volumes))
    node_id = spoil("node", st.sampled_from([pool.nodes[0], *pool.nodes]), ids("i", pool.nodes))
    publish = csi_pb2.ControllerPublishVolumeRequest(
        volume_id=volume_id,
        node_id=node_id,
        readonly=data.draw(st.booleans()),
        volume_context=spoil("context", NO_MAP, PARAMS),
    )
    cap = spoil("capability", st.just(_rwo()), st.one_of(st.none(), capability()))
    if cap is not None:
        publish.volume_capability.CopyFrom(cap)
    check(world, "ControllerPublishVolume", publish)
    unpublish_node = spoil("unpublish", st.just(node_id), st.one_of(st.just(""), ids("i", pool.nodes)))
    unpublish = csi_pb2.ControllerUnpublishVolumeRequest(volume_id=volume_id, node_id=unpublish_node)
    code, _ = check(world, "ControllerUnpublishVolume", unpublish)
    if code == C.OK and volume_id in world.volumes():
        # CSI: after Unpublish the volume is not attached to that node (or, with no node_id, to any).
        attached = {a["InstanceId"] for a in world.volumes()[volume_id].get("Attachments", [])}
        assert not attached & ({unpublish_node} if unpublish_node else set(pool.nodes)), attached


@given(data=st.data())
@PROPERTY
def test_validate_get_and_list_volumes(world: World, pool: Pool, data: st.DataObject) -> None:
    spoil = Spoil(data, ["volume", "capabilities", "context", "parameters", "mutable", "max", "token"])
    volume_id = spoil("volume", existing(pool.volumes), ids("vol", pool.volumes))
    validate = csi_pb2.ValidateVolumeCapabilitiesRequest(
        volume_id=volume_id,
        volume_capabilities=spoil("capabilities", st.just([_rwo()]), CAPABILITIES),
        volume_context=spoil("context", NO_MAP, PARAMS),
        parameters=spoil("parameters", st.one_of(NO_MAP, GOOD_PARAMS), PARAMS),
        mutable_parameters=spoil("mutable", NO_MAP, PARAMS),
    )
    check(world, "ValidateVolumeCapabilities", validate)
    check(world, "ControllerGetVolume", csi_pb2.ControllerGetVolumeRequest(volume_id=volume_id))
    listing = csi_pb2.ListVolumesRequest(
        max_entries=spoil("max", st.integers(0, 5), st.integers(-(2**31), 2**31 - 1)),
        starting_token=spoil(
            "token", st.one_of(st.just(""), existing(pool.volumes)), ids("vol", pool.volumes)
        ),
    )
    code, response = check(world, "ListVolumes", listing)
    if code == C.OK and response.next_token:
        check(world, "ListVolumes", csi_pb2.ListVolumesRequest(starting_token=response.next_token))


@given(data=st.data())
@PROPERTY
def test_expand_and_modify(world: World, pool: Pool, data: st.DataObject) -> None:
    spoil = Spoil(data, ["volume", "capacity", "capability", "mutable"])
    volume_id = spoil("volume", existing(pool.volumes), ids("vol", pool.volumes))
    expand = csi_pb2.ControllerExpandVolumeRequest(volume_id=volume_id)
    capacity = spoil(
        "capacity", st.integers(1, 100).map(lambda g: csi_pb2.CapacityRange(required_bytes=g * GIB)), CAPACITY
    )
    if capacity is not None:
        expand.capacity_range.CopyFrom(capacity)
    cap = spoil("capability", st.one_of(st.none(), st.just(_rwo())), capability())
    if cap is not None:
        expand.volume_capability.CopyFrom(cap)
    code, response = check(world, "ControllerExpandVolume", expand)
    if code == C.OK:
        assert world.volumes()[volume_id]["Size"] * GIB >= response.capacity_bytes >= capacity.required_bytes
    mutable = spoil("mutable", st.sampled_from(MUTABLE), PARAMS)
    modify = csi_pb2.ControllerModifyVolumeRequest(volume_id=volume_id, mutable_parameters=mutable)
    check(world, "ControllerModifyVolume", modify)


@given(data=st.data())
@PROPERTY
def test_snapshots(world: World, pool: Pool, data: st.DataObject) -> None:
    spoil = Spoil(data, ["name", "source", "parameters", "snapshot", "max", "token", "filter"])
    name = spoil("name", st.from_regex(r"snap-[a-z0-9]{1,12}", fullmatch=True), TEXT)
    create = csi_pb2.CreateSnapshotRequest(
        name=name,
        source_volume_id=spoil("source", existing(pool.volumes), ids("vol", pool.volumes)),
        parameters=spoil("parameters", NO_MAP, PARAMS),
    )
    before = world.snapshots()
    code, response = check(world, "CreateSnapshot", create)
    after = world.snapshots()
    if code == C.OK:
        snapshot_id = response.snapshot.snapshot_id
        assert snapshot_id in after and _tags(after[snapshot_id])[TAG_SNAPSHOT_NAME] == name
    else:
        assert set(after) == set(before), "a failed CreateSnapshot must leave EC2's snapshots as they were"
    snapshot_id = spoil("snapshot", existing(pool.snapshots), ids("snap", pool.snapshots))
    check(world, "GetSnapshot", csi_pb2.GetSnapshotRequest(snapshot_id=snapshot_id))
    listing = csi_pb2.ListSnapshotsRequest(
        max_entries=spoil("max", st.integers(0, 5), st.integers(-5, 2**31 - 1)),
        starting_token=spoil("token", st.just(""), ids("snap", pool.snapshots)),
        snapshot_id=spoil(
            "filter", st.one_of(st.just(""), existing(pool.snapshots)), ids("snap", pool.snapshots)
        ),
        source_volume_id=spoil(
            "filter", st.one_of(st.just(""), existing(pool.volumes)), ids("vol", pool.volumes)
        ),
    )
    check(world, "ListSnapshots", listing)


RAW_METHODS = [
    f"/csi.v1.{service}/{method.name}"
    for service in ("Identity", "Controller")
    for method in csi_pb2.DESCRIPTOR.services_by_name[service].methods
]


@given(method=st.sampled_from(RAW_METHODS), payload=st.binary(max_size=64))
@PROPERTY
def test_raw_bytes(world: World, method: str, payload: bytes) -> None:
    rpc = method.rsplit("/", 1)[1]
    call = world.channel.unary_unary(
        method, request_serializer=lambda b: b, response_deserializer=lambda b: b
    )
    before = set(world.volumes())
    try:
        call(payload, timeout=30)
    except grpc.RpcError as e:
        error: Any = e
        assert error.code() in ALLOWED[rpc] | {C.INVALID_ARGUMENT}, (method, error.code(), error.details())
    still_healthy(world)
    if rpc != "CreateVolume":
        assert set(world.volumes()) <= before, "only CreateVolume may add a volume"


# Deletes last: they may remove the pool's objects.


@given(data=st.data())
@PROPERTY
def test_deletes(world: World, pool: Pool, data: st.DataObject) -> None:
    snapshot_id = data.draw(st.one_of(existing(pool.snapshots), ids("snap", pool.snapshots)))
    check(world, "DeleteSnapshot", csi_pb2.DeleteSnapshotRequest(snapshot_id=snapshot_id))
    volume_id = data.draw(st.one_of(existing(pool.volumes), ids("vol", pool.volumes)))
    before = world.volumes()
    code, _ = check(world, "DeleteVolume", csi_pb2.DeleteVolumeRequest(volume_id=volume_id))
    if volume_id in before and code == C.OK:
        owner = _tags(before[volume_id]).get(TAG_ZONAL_DRIVER)
        assert owner == world.core.driver.driver_name, "DeleteVolume removed a volume zonal does not own"
    if code != C.OK:
        assert set(world.volumes()) == set(before)


def test_the_table_covers_every_rpc() -> None:
    served = {m.rsplit("/", 1)[1] for m in RAW_METHODS}
    assert served == set(ALLOWED)
