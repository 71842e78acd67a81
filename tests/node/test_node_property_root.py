"""Property: no Node request a client can send makes the plugin crash, answer an undocumented code, or
touch anything it was not given (root: real gRPC on a unix socket, real mounter, real loop devices).

One server (NodeService over NodeCore, LinuxMounter, SysfsDeviceResolver, FileNodeState) serves a
sandbox under tmp_path holding the volume VOL (a loop device the resolver proves), another attached
volume, decoy devices (a loop over a file with no volume name, one named after a volume outside the
embedded folder, one formatted and mounted), decoy paths (a file, a non-empty directory, a foreign
tmpfs, symlinks out to a tmpfs outside the sandbox) and kubelet-like empty directories. Hypothesis
draws requests for every Node RPC — good and bad ids, paths (NUL, control characters, 300-byte
components, 2,500 levels, relative, parent a file…), capabilities, mount flags, publish and volume
contexts — sometimes after staging/publishing VOL first. After each call:

- the code is OK or one the CSI spec documents for that RPC (its table, the general table, and
  FAILED_PRECONDITION for refusals naming what was found), never INTERNAL or UNKNOWN;
- the server still answers Probe;
- outside the paths the request named, nothing in the sandbox changed (tree snapshot, mount table
  entries under it), no decoy device's content changed, no loop device appeared or went away;
- then the plugin itself unpublishes/unstages what the example left (that must succeed) and the
  sandbox is put back, so examples do not leak into each other. At the end no mount and no loop
  device of this test is left.
"""

from __future__ import annotations

import os
import posixpath
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from provisioner.csi._proto import csi_pb2
from provisioner.csi.identity import IdentityService
from provisioner.csi.node_service import NodeService
from provisioner.csi.server import Services
from provisioner.mount.linux import run
from provisioner.node import NodeCore
from tests.grpcutil import Stubs, channel, running_server
from tests.node.loopkit import (
    MIB,
    Kit,
    file_hash,
    loops_backed_under,
    mountinfo,
    mounts_under,
    new_volume_id,
    snapshot,
)

pytestmark = [
    pytest.mark.root,
    pytest.mark.skipif(os.geteuid() != 0, reason="needs root: loop devices, mkfs and mount"),
]

Code = grpc.StatusCode
_GENERAL = {Code.INVALID_ARGUMENT, Code.ABORTED, Code.PERMISSION_DENIED, Code.UNIMPLEMENTED}
_REFUSED = {Code.FAILED_PRECONDITION}
ALLOWED = {
    "NodeStageVolume": _GENERAL | _REFUSED | {Code.NOT_FOUND, Code.ALREADY_EXISTS},
    "NodeUnstageVolume": _GENERAL | _REFUSED | {Code.NOT_FOUND},
    "NodePublishVolume": _GENERAL | _REFUSED | {Code.NOT_FOUND, Code.ALREADY_EXISTS},
    "NodeUnpublishVolume": _GENERAL | _REFUSED | {Code.NOT_FOUND},
    "NodeGetVolumeStats": _GENERAL | _REFUSED | {Code.NOT_FOUND},
    "NodeExpandVolume": _GENERAL | _REFUSED | {Code.NOT_FOUND, Code.OUT_OF_RANGE},
}
BASELINE_FILES = {"keep.txt": "user data", "file": "a regular file", "empty-file": ""}
STATS: list[tuple[str, str]] = []  # (method, code) of every generated call
EXAMPLES = 35  # per RPC: about 210 calls, 30-40 s on a 2-core machine
Cap = csi_pb2.VolumeCapability
Mode = Cap.AccessMode


@dataclass
class World:
    kit: Kit
    stubs: Stubs
    core: NodeCore
    sandbox: Path
    volume: str
    device: str
    other_volume: str
    other_device: str
    named_decoy: str  # a volume id whose file lies outside the embedded folder
    decoy_devices: dict[str, str] = field(default_factory=dict)  # device → backing file
    tree: dict[str, str] = field(default_factory=dict)
    mounts: list[tuple[str, str, str]] = field(default_factory=list)
    loops: list[str] = field(default_factory=list)

    def path(self, name: str) -> str:
        return str(self.sandbox / name)


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    root = tmp_path_factory.mktemp("property")
    kit = Kit(root)
    try:
        volume, device = kit.volume(32 * MIB)
        other_volume, other_device = kit.volume(8 * MIB)
        named = new_volume_id()
        decoys = {
            kit.decoy(root / "decoys" / "decoy.img", 8 * MIB): str(root / "decoys" / "decoy.img"),
            kit.decoy(root / "decoys" / named, 8 * MIB): str(root / "decoys" / named),
        }
        mounted = kit.decoy(root / "decoys" / "mounted.img", 8 * MIB)
        decoys[mounted] = str(root / "decoys" / "mounted.img")
        run(["mkfs.ext4", "-q", "-E", "lazy_itable_init=0,lazy_journal_init=0", mounted], 60)
        sandbox = root / "sandbox"
        for d in ("staging", "pods/p1/volumes", "full", "empty"):
            (sandbox / d).mkdir(parents=True)
        for name, text in BASELINE_FILES.items():
            (sandbox / ("full/" if name == "keep.txt" else "") / name).write_text(text)
        (sandbox / "decoy-mount").mkdir()
        run(["mount", "-o", "ro", mounted, str(sandbox / "decoy-mount")], 30)
        kit.tmpfs("outside", {"keep.txt": "outside the sandbox"})
        kit.tmpfs("sandbox/foreign", {"keep.txt": "a foreign tmpfs"})
        (sandbox / "link").symlink_to(root / "outside")
        (sandbox / "linkdir").symlink_to(root / "outside")
        core = kit.core
        services = Services(
            identity=IdentityService("zonal.csi.dev", "0", controller=False), node=NodeService(core)
        )
        with running_server(root, services, mode="node") as server, channel(server) as ch:
            w = World(
                kit, Stubs(ch), core, sandbox, volume, device, other_volume, other_device, named, decoys
            )
            w.tree = snapshot(sandbox)
            w.mounts = mounts_under(sandbox)
            w.loops = loops_backed_under(root)
            yield w
        assert mounts_under(sandbox) == w.mounts, "a mount made by the plugin was left behind"
        # Not vacuous: each RPC both did its work (OK) and refused something, in this run.
        for method in {m for m, _ in STATS}:
            codes = {code for m, code in STATS if m == method}
            assert "OK" in codes and len(codes) > 1, f"{method} only answered {codes}"
    finally:
        kit.cleanup()
    assert loops_backed_under(root) == [] and mounts_under(root) == []


# -- strategies: mostly plausible requests (so the deep paths run), each field sometimes hostile -----

_text = st.text(max_size=40)


Pair = tuple[st.SearchStrategy[Any], st.SearchStrategy[Any]]
HOSTILE_SHARE = 0.1  # of each field; Hypothesis's own branch choice would pick hostile far more often


def mostly(good: st.SearchStrategy[Any], hostile: st.SearchStrategy[Any]) -> Pair:
    return good, hostile


class Draw:
    """Draws each field from its plausible strategy, or (HOSTILE_SHARE of the time) its hostile one."""

    def __init__(self, data: st.DataObject) -> None:
        self.data = data
        self.random = data.draw(st.randoms(use_true_random=True))

    def chance(self, p: float) -> bool:
        return self.random.random() < p

    def __call__(self, pair: Pair) -> Any:
        good, hostile = pair
        return self.data.draw(hostile if self.random.random() < HOSTILE_SHARE else good)


def volume_ids(w: World) -> Pair:
    good = st.sampled_from([w.volume] * 7 + [w.other_volume, w.named_decoy, new_volume_id()])
    hostile = st.sampled_from(["", "vol-0", "fake-vol-id", "vol-\x00", "vol-a\nb", "v" * 200]) | _text
    return mostly(good, hostile)


_NAMES = [
    "staging", "pods/p1/volumes/mount", "pods/p2/deep/new/mount", "file", "file/x", "full", "empty",
    "empty-file", "foreign", "decoy-mount", "link", "link/keep.txt", "linkdir/new", "missing", "staging//",
    "./staging/.",
]  # fmt: skip


def paths(w: World) -> Pair:
    good = st.one_of(
        st.sampled_from([w.path(n) for n in _NAMES]),
        st.builds(lambda s: w.path("gen/" + s), st.text(alphabet="abc/. -", min_size=1, max_size=12)),
    )
    hostile = st.one_of(
        st.sampled_from(
            [
                "",
                "some/path",
                "/",
                w.path("a\x00b"),
                w.path("a\x01b"),
                w.path("x" * 300),
                w.path("/".join(["d"] * 2500)),
                w.path("../../etc"),
            ]
        ),
        st.builds(lambda s: w.path("gen/" + s), st.text(alphabet="ab/.\\\n\x00\x7f", max_size=12)),
        _text.filter(lambda s: not s.startswith("/")),
    )
    return mostly(good, hostile)


_GOOD_FLAGS = ["noatime", "nodev", "nosuid", "ro", "discard", 'context="system_u:object_r:x:s0:c1,c2"']
_BAD_FLAGS = [
    "bind",
    "remount",
    "loop",
    "offset=4096",
    "a,b",
    "",
    "x" * 300,
    "X-mount.mkdir",
    "logdev=/dev/vda",
]


def capabilities(w: World) -> Pair:
    good_modes = st.sampled_from([Mode.SINGLE_NODE_WRITER] * 3 + [Mode.SINGLE_NODE_READER_ONLY])
    any_modes = st.sampled_from([Mode.MULTI_NODE_MULTI_WRITER, Mode.MULTI_NODE_READER_ONLY, 0, 99])
    good_flags = st.lists(st.sampled_from(_GOOD_FLAGS), max_size=2)
    any_flags = st.lists(st.sampled_from(_BAD_FLAGS) | _text, min_size=1, max_size=3)
    good_fs = st.sampled_from(["", "ext4", "ext4", "xfs", "EXT4"])
    any_fs = st.sampled_from(["ntfs", "ext4\x00", "btrfs"]) | _text

    def mount(modes: Any, fs: Any, flags: Any) -> st.SearchStrategy[Cap]:
        return st.builds(
            lambda m, f, fl: Cap(mount=Cap.MountVolume(fs_type=f, mount_flags=fl), access_mode=Mode(mode=m)),
            modes,
            fs,
            flags,
        )

    block = st.builds(
        lambda m: Cap(block=Cap.BlockVolume(), access_mode=Mode(mode=m)), good_modes | any_modes
    )
    good = st.one_of(mount(good_modes, good_fs, good_flags), mount(good_modes, good_fs, good_flags), block)
    hostile = st.one_of(
        mount(any_modes, good_fs, good_flags),
        mount(good_modes, any_fs, good_flags),
        mount(good_modes, good_fs, any_flags),
        st.none(),
        st.just(Cap()),
    )
    return mostly(good, hostile)


def publish_contexts(w: World) -> Pair:
    devices = [w.device, w.other_device, *w.decoy_devices, "/dev/zero", "/dev/null"]
    good = st.one_of(
        st.just({}), st.builds(lambda d: {"devicePath": d}, st.sampled_from([w.device, *devices]))
    )
    hostile = st.one_of(
        st.builds(
            lambda d: {"devicePath": d},
            st.sampled_from(["/etc/passwd", "/dev/a\x00b", "/dev/../etc"]) | _text,
        ),
        st.builds(lambda d, n: {"devicePath": d, "volumeSizeBytes": n}, st.sampled_from(devices), _text),
        st.dictionaries(_text, _text, max_size=3),
    )
    return mostly(good, hostile)


_FORMAT_KEYS = [
    "blocksize",
    "inodesize",
    "bytesperinode",
    "numberofinodes",
    "ext4bigalloc",
    "ext4clustersize",
]


def volume_contexts() -> Pair:
    good: st.SearchStrategy[dict[str, str]] = st.sampled_from(
        [{}, {"blocksize": "4096"}, {"inodesize": "256"}]
    )
    values = st.sampled_from(["4096", "1024", "3000", "-1", "²", "9" * 30, "true", "yes", ""]) | _text
    hostile = st.one_of(
        st.dictionaries(st.sampled_from(_FORMAT_KEYS), values, min_size=1, max_size=2),
        st.dictionaries(_text, _text, max_size=2),
    )
    return mostly(good, hostile)


# -- running one example ---------------------------------------------------------------------------


def _normal(path: str) -> str:
    return posixpath.normpath(path) if path.startswith("/") else ""


def _prepare(w: World, stage: bool, publish_at: str) -> None:
    """Optionally stage VOL at sandbox/staging and publish it at ``publish_at`` before the call."""
    if not stage:
        return
    cap = Cap(mount=Cap.MountVolume(fs_type="ext4"), access_mode=Mode(mode=Mode.SINGLE_NODE_WRITER))
    w.stubs.node.NodeStageVolume(
        csi_pb2.NodeStageVolumeRequest(
            volume_id=w.volume,
            staging_target_path=w.path("staging"),
            volume_capability=cap,
            publish_context={"devicePath": w.device},
        ),
        timeout=30,
    )
    if publish_at:
        w.stubs.node.NodePublishVolume(
            csi_pb2.NodePublishVolumeRequest(
                volume_id=w.volume,
                staging_target_path=w.path("staging"),
                target_path=publish_at,
                volume_capability=cap,
            ),
            timeout=30,
        )


def _allowed_change(entry: str, given: list[str], before: dict[str, str]) -> bool:
    for g in given:
        if entry == g or entry.startswith(g + "/"):
            return True
        if g.startswith(entry + "/") and entry not in before:
            return True  # a parent directory the plugin made for a given path
    return False


def _call(w: World, method: str, request: Any, given: list[str]) -> None:
    before_tree, before_mounts, before_hashes = snapshot(w.sandbox), mounts_under(w.kit.root), _hashes(w)
    outside = snapshot(w.kit.root / "outside")
    try:
        getattr(w.stubs.node, method)(request, timeout=30)
        STATS.append((method, "OK"))
    except grpc.RpcError as e:
        STATS.append((method, e.code().name))
        assert e.code() in ALLOWED[method], f"{method} answered {e.code().name}: {e.details()}"
        assert len(e.details()) < 800, e.details()
    assert w.stubs.identity.Probe(csi_pb2.ProbeRequest(), timeout=10) is not None
    given = [g for g in given if g]
    after_tree = snapshot(w.sandbox)
    for entry in set(before_tree) | set(after_tree):
        if before_tree.get(entry) != after_tree.get(entry):
            assert _allowed_change(entry, given, before_tree), f"{method} changed {entry} (given {given})"
    assert snapshot(w.kit.root / "outside") == outside, f"{method} changed what a symlink points to"
    for mount in set(before_mounts) ^ set(mounts_under(w.kit.root)):
        assert mount[0] in given, f"{method} changed the mount {mount} (given {given})"
    for dev, digest in _hashes(w).items():
        if digest != before_hashes[dev]:
            assert dev == w.other_device and request.volume_id == w.other_volume, f"{method} changed {dev}"
    assert loops_backed_under(w.kit.root) == w.loops
    _restore(w)


def _hashes(w: World) -> dict[str, str]:
    """Content of every device that is not VOL (decoys, and the other volume)."""
    files = {**w.decoy_devices, w.other_device: str(w.kit.loops / w.other_volume)}
    return {dev: file_hash(f) for dev, f in files.items()}


def _restore(w: World) -> None:
    """Let the plugin take back what the example left mounted, then put the sandbox back."""
    baseline = {m[0] for m in w.mounts}
    for target in reversed([m[0] for m in mounts_under(w.sandbox)]):
        if target in baseline:
            continue
        for volume in (w.volume, w.other_volume):
            while _owner(w, volume, target):
                try:
                    w.stubs.node.NodeUnpublishVolume(
                        csi_pb2.NodeUnpublishVolumeRequest(volume_id=volume, target_path=target), timeout=30
                    )
                except grpc.RpcError as e:
                    # zonal staged the volume there: only NodeUnstage takes a staging mount back.
                    assert e.code() == grpc.StatusCode.FAILED_PRECONDITION, e.details()
                    w.stubs.node.NodeUnstageVolume(
                        csi_pb2.NodeUnstageVolumeRequest(volume_id=volume, staging_target_path=target),
                        timeout=30,
                    )
    assert mounts_under(w.sandbox) == w.mounts, "the plugin could not take back what it mounted"
    now = snapshot(w.sandbox)
    for entry in sorted(set(now) - set(w.tree), key=len, reverse=True):
        p = Path(entry)
        if p.is_symlink() or p.is_file():
            p.unlink()
        else:
            p.rmdir()
    for entry, kind in sorted(w.tree.items(), key=lambda kv: len(kv[0])):
        p = Path(entry)
        if os.path.lexists(p):
            continue
        if kind == "dir":
            p.mkdir()
        elif kind.startswith("file:"):
            p.write_text(BASELINE_FILES[p.name])
    assert snapshot(w.sandbox) == w.tree


def _owner(w: World, volume: str, target: str) -> bool:
    """Whether ``target``'s top mount is ``volume``'s device (by device number)."""
    number = os.stat(w.device if volume == w.volume else w.other_device).st_rdev
    tops = [m for m in mountinfo() if m.target == target]
    if not tops:
        return False
    if tops[-1].fs_type == "devtmpfs":  # a block volume: the device node itself is bound there
        return os.stat(target).st_rdev == number
    return tops[-1].major_minor == f"{os.major(number)}:{os.minor(number)}"


SETTINGS = settings(
    max_examples=EXAMPLES,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[
        HealthCheck.function_scoped_fixture,
        HealthCheck.too_slow,
        HealthCheck.data_too_large,
    ],
)


@SETTINGS
@given(data=st.data())
def test_node_stage(world: World, data: st.DataObject) -> None:
    w, draw = world, Draw(data)
    request = csi_pb2.NodeStageVolumeRequest(
        volume_id=draw(volume_ids(w)),
        staging_target_path=draw(paths(w)),
        volume_capability=draw(capabilities(w)),
        publish_context=draw(publish_contexts(w)),
        volume_context=draw(volume_contexts()),
    )
    _call(w, "NodeStageVolume", request, [_normal(request.staging_target_path)])


@SETTINGS
@given(data=st.data())
def test_node_publish(world: World, data: st.DataObject) -> None:
    w, draw = world, Draw(data)
    _prepare(w, draw.chance(0.7), "")
    staging = draw((st.just(w.path("staging")), paths(w)[1]))
    request = csi_pb2.NodePublishVolumeRequest(
        volume_id=draw(volume_ids(w)),
        staging_target_path=staging,
        target_path=draw(paths(w)),
        volume_capability=draw(capabilities(w)),
        readonly=data.draw(st.booleans()),
        publish_context=draw(publish_contexts(w)),
        volume_context=draw(volume_contexts()),
    )
    _call(w, "NodePublishVolume", request, [_normal(request.target_path)])


@pytest.mark.parametrize(
    "method", ["NodeUnpublishVolume", "NodeUnstageVolume", "NodeGetVolumeStats", "NodeExpandVolume"]
)
@SETTINGS
@given(data=st.data())
def test_node_path_calls(world: World, method: str, data: st.DataObject) -> None:
    w, draw = world, Draw(data)
    prepared = draw.chance(0.6)
    publish_at = w.path("pods/p1/volumes/mount") if draw.chance(0.5) else ""
    _prepare(w, prepared, publish_at)
    mounted = [p for p in (w.path("staging") if prepared else "", publish_at) if p]
    path = data.draw(st.sampled_from(mounted)) if mounted and draw.chance(0.5) else draw(paths(w))
    volume_id = draw(volume_ids(w))
    request: Any
    if method == "NodeUnpublishVolume":
        request = csi_pb2.NodeUnpublishVolumeRequest(volume_id=volume_id, target_path=path)
    elif method == "NodeUnstageVolume":
        request = csi_pb2.NodeUnstageVolumeRequest(volume_id=volume_id, staging_target_path=path)
    elif method == "NodeGetVolumeStats":
        request = csi_pb2.NodeGetVolumeStatsRequest(volume_id=volume_id, volume_path=path)
    else:
        cap = draw(capabilities(w))
        request = csi_pb2.NodeExpandVolumeRequest(
            volume_id=volume_id,
            volume_path=path,
            volume_capability=cap,
            capacity_range=csi_pb2.CapacityRange(required_bytes=data.draw(st.integers(0, 2**62))),
        )
    _call(w, method, request, [_normal(path)])
