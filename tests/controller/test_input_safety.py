"""Issue 11, controller side: every bad input is a documented code with a short message, checked before
EC2 sees it, and EC2 stays consistent (over real gRPC, against the EC2 simulator)."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import grpc
import pytest

from provisioner.csi._proto import csi_pb2
from provisioner.model import GIB, TAG_DRIVER, TAG_VOLUME_NAME, TAG_ZONAL_DRIVER
from tests.controller.simgrpc import World, sim_world, tag_specifications

RWO = csi_pb2.VolumeCapability(
    mount=csi_pb2.VolumeCapability.MountVolume(fs_type="ext4"),
    access_mode=csi_pb2.VolumeCapability.AccessMode(
        mode=csi_pb2.VolumeCapability.AccessMode.SINGLE_NODE_WRITER
    ),
)
INVALID = grpc.StatusCode.INVALID_ARGUMENT
NOT_FOUND = grpc.StatusCode.NOT_FOUND
HUGE_ID = "vol-" + "a" * 10_000
OWNED = {TAG_ZONAL_DRIVER: "zonal.csi.dev", TAG_DRIVER: "true"}


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    with sim_world(tmp_path_factory.mktemp("input-safety")) as world:
        yield world


def create_request(name: str, **fields: Any) -> csi_pb2.CreateVolumeRequest:
    request = csi_pb2.CreateVolumeRequest(
        name=name, volume_capabilities=[RWO], capacity_range=csi_pb2.CapacityRange(required_bytes=GIB)
    )
    for key, value in fields.items():
        if key in ("parameters", "mutable_parameters"):
            getattr(request, key).update(value)
        else:
            setattr(request, key, value)
    return request


def refused(call: Callable[..., Any], request: Any, code: grpc.StatusCode) -> str:
    """Call, expect ``code``; return the status message (which must be short)."""
    with pytest.raises(grpc.RpcError) as info:
        call(request, timeout=30)
    error: Any = info.value
    assert error.code() == code, error.details()
    details: str = error.details()
    assert len(details.encode()) <= 1024, "status messages are capped at 1 KiB"
    return details


def assert_consistent(world: World) -> None:
    """ListVolumes answers OK and lists every volume zonal owns in EC2 (checked against EC2 itself)."""
    listed = {
        e.volume.volume_id for e in world.stubs.controller.ListVolumes(csi_pb2.ListVolumesRequest()).entries
    }
    owned = {
        v
        for v, raw in world.volumes().items()
        if {t["Key"]: t["Value"] for t in raw.get("Tags", [])}.get(TAG_ZONAL_DRIVER)
    }
    assert owned <= listed
    assert world.stubs.identity.Probe(csi_pb2.ProbeRequest(), timeout=10).ready.value


@pytest.mark.parametrize(
    "name",
    ["a\x00b", "pvc\x01", "pvc\r1", "pvc\x7f", "pvc\x85", "pvc\x1b[31m", "x" * 129, "é" * 65, "\ufffe"],
)
def test_bad_names_are_refused_before_ec2(world: World, name: str) -> None:
    before = set(world.volumes())
    message = refused(world.stubs.controller.CreateVolume, create_request(name), INVALID)
    assert "name" in message
    assert set(world.volumes()) == before, "a refused CreateVolume must not create anything"
    assert_consistent(world)


def test_names_at_the_limit_and_with_tab_or_newline_work(world: World) -> None:
    # CSI: names up to 128 bytes; TAB and LF are not among the banned characters.
    for name in ("m" * 128, "é" * 64, "pvc\twith\ttabs", "pvc\nwith\nlines"):
        first = world.stubs.controller.CreateVolume(create_request(name), timeout=30).volume
        again = world.stubs.controller.CreateVolume(create_request(name), timeout=30).volume
        assert first.volume_id == again.volume_id
        tags = {t["Key"]: t["Value"] for t in world.volumes()[first.volume_id]["Tags"]}
        assert tags[TAG_VOLUME_NAME] == name
    assert_consistent(world)


def test_nul_in_node_id_and_source_volume_id(world: World) -> None:
    volume_id = world.stubs.controller.CreateVolume(
        create_request("pvc-nul-node"), timeout=30
    ).volume.volume_id
    ctl = world.stubs.controller
    publish = csi_pb2.ControllerPublishVolumeRequest(
        volume_id=volume_id, node_id="i-\x00", volume_capability=RWO
    )
    assert "node_id" in refused(ctl.ControllerPublishVolume, publish, INVALID)
    unpublish = csi_pb2.ControllerUnpublishVolumeRequest(volume_id=volume_id, node_id="\x00")
    assert "node_id" in refused(ctl.ControllerUnpublishVolume, unpublish, INVALID)
    snapshots = set(world.snapshots())
    snapshot = csi_pb2.CreateSnapshotRequest(name="snap-nul", source_volume_id=volume_id + "\x00")
    assert "source_volume_id" in refused(ctl.CreateSnapshot, snapshot, INVALID)
    assert set(world.snapshots()) == snapshots
    assert_consistent(world)


def test_a_node_id_over_256_bytes_is_invalid_and_an_unknown_one_not_found(world: World) -> None:
    ctl = world.stubs.controller
    volume_id = ctl.CreateVolume(create_request("pvc-node-ids"), timeout=30).volume.volume_id
    long_node = csi_pb2.ControllerPublishVolumeRequest(
        volume_id=volume_id, node_id="i-" + "0" * 300, volume_capability=RWO
    )
    assert "256" in refused(ctl.ControllerPublishVolume, long_node, INVALID)
    for node in ("node-1", "i-0123456789abcdef0", "i-\x01"):
        request = csi_pb2.ControllerPublishVolumeRequest(
            volume_id=volume_id, node_id=node, volume_capability=RWO
        )
        refused(ctl.ControllerPublishVolume, request, NOT_FOUND)  # CSI: node does not exist


def test_a_10000_character_volume_id_is_not_found_with_a_short_message(
    world: World, caplog: pytest.LogCaptureFixture
) -> None:
    ctl = world.stubs.controller
    caplog.set_level(logging.INFO)
    message = refused(
        ctl.ControllerGetVolume, csi_pb2.ControllerGetVolumeRequest(volume_id=HUGE_ID), NOT_FOUND
    )
    assert "10004 characters" in message and len(message) < 250
    validate = csi_pb2.ValidateVolumeCapabilitiesRequest(volume_id=HUGE_ID, volume_capabilities=[RWO])
    refused(ctl.ValidateVolumeCapabilities, validate, NOT_FOUND)
    publish = csi_pb2.ControllerPublishVolumeRequest(
        volume_id=HUGE_ID, node_id=world.node, volume_capability=RWO
    )
    refused(ctl.ControllerPublishVolume, publish, NOT_FOUND)
    expand = csi_pb2.ControllerExpandVolumeRequest(
        volume_id=HUGE_ID, capacity_range=csi_pb2.CapacityRange(required_bytes=GIB)
    )
    refused(ctl.ControllerExpandVolume, expand, NOT_FOUND)
    refused(ctl.ControllerModifyVolume, csi_pb2.ControllerModifyVolumeRequest(volume_id=HUGE_ID), NOT_FOUND)
    refused(ctl.GetSnapshot, csi_pb2.GetSnapshotRequest(snapshot_id="snap-" + "b" * 10_000), NOT_FOUND)
    refused(
        ctl.CreateSnapshot, csi_pb2.CreateSnapshotRequest(name="s-huge", source_volume_id=HUGE_ID), NOT_FOUND
    )
    ctl.DeleteVolume(csi_pb2.DeleteVolumeRequest(volume_id=HUGE_ID), timeout=10)  # CSI: unknown id → OK
    ctl.DeleteSnapshot(csi_pb2.DeleteSnapshotRequest(snapshot_id="snap-" + "b" * 10_000), timeout=10)
    ctl.ControllerUnpublishVolume(
        csi_pb2.ControllerUnpublishVolumeRequest(volume_id=HUGE_ID, node_id=world.node)
    )
    listed = ctl.ListSnapshots(csi_pb2.ListSnapshotsRequest(source_volume_id=HUGE_ID), timeout=10)
    assert not listed.entries
    refused(ctl.ListVolumes, csi_pb2.ListVolumesRequest(starting_token=HUGE_ID), grpc.StatusCode.ABORTED)
    # Log lines quote such inputs shortly too (the request line, the failure line, their context).
    records = [r for r in caplog.records if r.name.startswith("zonal")]
    assert records
    for record in records:
        assert len(record.getMessage()) < 3000, record.getMessage()[:200]
        assert all(
            len(str(getattr(record, k, ""))) <= 200 for k in ("volume_id", "snapshot_id", "source_volume_id")
        )
    assert_consistent(world)


@pytest.mark.parametrize(
    ("parameters", "mentions"),
    [
        ({"iops": "abc"}, "iops"),
        ({"iops": "1e3"}, "iops"),
        ({"iops": "١٢٣٤"}, "iops"),
        ({"iops": "1_000"}, "iops"),
        ({"iops": "99999999999"}, "iops"),
        ({"throughput": "-5"}, "throughput"),
        ({"encrypted": "yes"}, "encrypted"),
        ({"blockSize": "4096.0"}, "blockSize"),
        ({"type": "gp3\x01"}, "type"),
        ({"tagSpecification_1": "k=\x02"}, "tagSpecification_1"),
        ({"big": "v" * 5000}, "4096"),
        ({f"tagSpecification_{i}": f"k{i}=v" for i in range(60)}, "50"),
    ],
)
def test_wrong_values_in_maps_are_invalid_argument_and_create_nothing(
    world: World, parameters: dict[str, str], mentions: str
) -> None:
    before = set(world.volumes())
    message = refused(
        world.stubs.controller.CreateVolume, create_request("pvc-params", parameters=parameters), INVALID
    )
    assert mentions in message
    assert set(world.volumes()) == before
    assert_consistent(world)


def test_oversized_capability_and_topology_fields(world: World) -> None:
    ctl = world.stubs.controller
    flags = csi_pb2.VolumeCapability(
        mount=csi_pb2.VolumeCapability.MountVolume(mount_flags=["x" * 1000] * 5), access_mode=RWO.access_mode
    )
    request = create_request("pvc-flags")
    request.volume_capabilities[0].CopyFrom(flags)
    assert "mount_flags" in refused(ctl.CreateVolume, request, INVALID)
    request = create_request("pvc-topology")
    request.accessibility_requirements.requisite.add().segments.update(
        {"topology.kubernetes.io/zone": "z" * 5000}
    )
    assert "requisite" in refused(ctl.CreateVolume, request, INVALID)


def test_bytes_that_are_not_the_request_are_invalid_argument(world: World) -> None:
    payloads = {
        "/csi.v1.Identity/Probe": b"\xff\xff\xff",  # not protobuf at all
        "/csi.v1.Controller/CreateVolume": b"\x0a\x02\xff\xfe",  # name: invalid UTF-8
        "/csi.v1.Controller/ListVolumes": b"\x12\x02\xc3\x28",  # starting_token: invalid UTF-8
        "/csi.v1.Controller/DeleteVolume": b"\x0a\x10vol",  # volume_id: cut short
    }
    for method, payload in payloads.items():
        call = world.channel.unary_unary(
            method, request_serializer=lambda b: b, response_deserializer=lambda b: b
        )
        with pytest.raises(grpc.RpcError) as info:
            call(payload, timeout=10)
        error: Any = info.value
        assert error.code() == INVALID, (method, error.details())
        assert "not a valid csi.v1." in error.details()
    assert_consistent(world)


def test_list_volumes_with_odd_but_legal_tag_characters(world: World) -> None:
    odd = ["<&>\"'", "tab\tand\nnewline", "é😀", "del\x7f", "nel\x85", " "]
    made = {
        world.make_volume({**OWNED, TAG_VOLUME_NAME: f"odd-{i}", "note": value})
        for i, value in enumerate(odd)
    }
    made.add(world.make_volume({**OWNED, TAG_VOLUME_NAME: "<&>😀\t"}))
    listed = {
        e.volume.volume_id for e in world.stubs.controller.ListVolumes(csi_pb2.ListVolumesRequest()).entries
    }
    assert made <= listed
    for volume_id in made:
        got = world.stubs.controller.ControllerGetVolume(
            csi_pb2.ControllerGetVolumeRequest(volume_id=volume_id)
        )
        assert got.volume.volume_id == volume_id
    assert_consistent(world)


def test_modify_volume_semantics(world: World) -> None:
    ctl = world.stubs.controller
    volume_id = ctl.CreateVolume(create_request("pvc-modify"), timeout=30).volume.volume_id
    # CSI: volume does not exist → NOT_FOUND, whether or not parameters are given.
    missing = csi_pb2.ControllerModifyVolumeRequest(volume_id="vol-0000000000000dead")
    refused(ctl.ControllerModifyVolume, missing, NOT_FOUND)
    missing.mutable_parameters["iops"] = "4000"
    refused(ctl.ControllerModifyVolume, missing, NOT_FOUND)
    refused(
        ctl.ControllerModifyVolume, csi_pb2.ControllerModifyVolumeRequest(volume_id="not-a-volume"), NOT_FOUND
    )
    # CSI: an existing volume with empty mutable_parameters → OK, nothing changes.
    before = world.volumes()[volume_id]
    ctl.ControllerModifyVolume(csi_pb2.ControllerModifyVolumeRequest(volume_id=volume_id), timeout=30)
    after = world.volumes()[volume_id]
    assert (after["Iops"], after["VolumeType"], after["Size"]) == (
        before["Iops"],
        before["VolumeType"],
        before["Size"],
    )
    modified = world.sim.counters.snapshot().get("ModifyVolume")
    assert modified is None or modified.calls == 0
    unsupported = csi_pb2.ControllerModifyVolumeRequest(
        volume_id=volume_id, mutable_parameters={"XXX_FakeKey": "v"}
    )
    refused(ctl.ControllerModifyVolume, unsupported, INVALID)
    ctl.ControllerModifyVolume(
        csi_pb2.ControllerModifyVolumeRequest(volume_id=volume_id, mutable_parameters={"iops": "4000"}),
        timeout=30,
    )
    assert world.volumes()[volume_id]["Iops"] == 4000


def test_unpublish_without_node_id_detaches_everywhere(world: World) -> None:
    ctl = world.stubs.controller
    request = create_request("pvc-unpublish-all")
    request.accessibility_requirements.requisite.add().segments["topology.kubernetes.io/zone"] = "us-east-1a"
    volume_id = ctl.CreateVolume(request, timeout=30).volume.volume_id
    ctl.ControllerPublishVolume(
        csi_pb2.ControllerPublishVolumeRequest(
            volume_id=volume_id, node_id=world.node, volume_capability=RWO
        ),
        timeout=30,
    )
    assert world.volumes()[volume_id]["State"] == "in-use"
    ctl.ControllerUnpublishVolume(csi_pb2.ControllerUnpublishVolumeRequest(volume_id=volume_id), timeout=30)
    assert world.volumes()[volume_id]["State"] == "available"
    ctl.DeleteVolume(csi_pb2.DeleteVolumeRequest(volume_id=volume_id), timeout=30)
    assert volume_id not in world.volumes()


def test_an_unreadable_ec2_answer_is_unavailable_not_internal(tmp_path: Path) -> None:
    # moto writes a tag value holding U+0001 into its XML as is, which no parser accepts. zonal never
    # writes one (names and parameters are checked first), but another tool could: ListVolumes then
    # says what happened (UNAVAILABLE), not "internal error".
    with sim_world(tmp_path) as world:
        request: dict[str, Any] = {
            "AvailabilityZone": "us-east-1a",
            "Size": 1,
            "TagSpecifications": tag_specifications("volume", {**OWNED, "note": "x\x01"}),
        }
        with pytest.raises(Exception, match="parse"):  # boto3 itself cannot read the answer
            world.ec2.create_volume(**request)
        message = refused(
            world.stubs.controller.ListVolumes, csi_pb2.ListVolumesRequest(), grpc.StatusCode.UNAVAILABLE
        )
        assert "could not be parsed" in message
        assert world.stubs.identity.Probe(csi_pb2.ProbeRequest(), timeout=10).ready.value
