"""The server layer over a real unix socket: modes, socket mode, concurrency, the error table,
secret stripping in logs."""

from __future__ import annotations

import gc
import logging
import os
import signal
import stat
import threading
import time
from collections.abc import Iterator
from concurrent import futures
from pathlib import Path

import grpc
import pytest

from provisioner import errors
from provisioner.csi._proto import csi_pb2, csi_pb2_grpc
from provisioner.csi.errors import CODES, GENERIC_INTERNAL, status_for
from provisioner.csi.identity import IdentityService
from provisioner.csi.interceptors import DEADLINE_HEADROOM
from provisioner.csi.server import Services, serve_until_signalled
from provisioner.ports.clock import current_deadline
from tests.grpcutil import Stubs, channel, running_server


class ScriptedController(csi_pb2_grpc.ControllerServicer):
    """CreateVolume raises whatever the test queued, or blocks on ``gate`` (a slow EC2 wait)."""

    def __init__(self) -> None:
        self.raise_next: BaseException | None = None
        self.gate = threading.Event()
        self.started = 0
        self.lock = threading.Lock()

    def CreateVolume(
        self, request: csi_pb2.CreateVolumeRequest, context: grpc.ServicerContext
    ) -> csi_pb2.CreateVolumeResponse:
        if self.raise_next is not None:
            raise self.raise_next
        with self.lock:
            self.started += 1
        self.gate.wait(30)
        return csi_pb2.CreateVolumeResponse(volume=csi_pb2.Volume(volume_id="vol-1"))


@pytest.fixture
def controller() -> ScriptedController:
    return ScriptedController()  # type: ignore[abstract]  # the other RPCs stay UNIMPLEMENTED


@pytest.fixture
def stubs(tmp_path: Path, controller: ScriptedController) -> Iterator[Stubs]:
    identity = IdentityService("test.csi.dev", "1.2.3", controller=True)
    with (
        running_server(tmp_path, Services(identity=identity, controller=controller)) as srv,
        channel(srv) as ch,
    ):
        yield Stubs(ch)
    controller.gate.set()


def test_socket_is_created_0660_and_removed_on_stop(tmp_path: Path) -> None:
    identity = IdentityService("test.csi.dev", "1", controller=False)
    with running_server(tmp_path, Services(identity=identity), mode="node"):
        mode = stat.S_IMODE(os.stat(tmp_path / "csi.sock").st_mode)
        assert mode == 0o660
    assert not (tmp_path / "csi.sock").exists()


def test_mode_registers_only_its_services(tmp_path: Path) -> None:
    identity = IdentityService("test.csi.dev", "1", controller=False)
    with running_server(tmp_path, Services(identity=identity), mode="node") as srv, channel(srv) as ch:
        stubs = Stubs(ch)
        with pytest.raises(grpc.RpcError) as exc:
            stubs.controller.ControllerGetCapabilities(csi_pb2.ControllerGetCapabilitiesRequest())
        assert exc.value.code() == grpc.StatusCode.UNIMPLEMENTED
        caps = stubs.identity.GetPluginCapabilities(csi_pb2.GetPluginCapabilitiesRequest())
        types = [c.service.type for c in caps.capabilities if c.HasField("service")]
        assert csi_pb2.PluginCapability.Service.CONTROLLER_SERVICE not in types


def test_identity(stubs: Stubs) -> None:
    info = stubs.identity.GetPluginInfo(csi_pb2.GetPluginInfoRequest())
    assert (info.name, info.vendor_version) == ("test.csi.dev", "1.2.3")
    caps = stubs.identity.GetPluginCapabilities(csi_pb2.GetPluginCapabilitiesRequest())
    types = {c.service.type for c in caps.capabilities}
    assert types == {
        csi_pb2.PluginCapability.Service.CONTROLLER_SERVICE,
        csi_pb2.PluginCapability.Service.VOLUME_ACCESSIBILITY_CONSTRAINTS,
    }
    assert stubs.identity.Probe(csi_pb2.ProbeRequest()).ready.value is True


def test_probe_failure_is_failed_precondition(tmp_path: Path) -> None:
    def unhealthy() -> None:
        raise errors.FailedPrecondition("EC2 unreachable: AuthFailure")

    identity = IdentityService("t.csi.dev", "1", controller=True, probe=unhealthy)
    with running_server(tmp_path, Services(identity=identity)) as srv, channel(srv) as ch:
        with pytest.raises(grpc.RpcError) as exc:
            Stubs(ch).identity.Probe(csi_pb2.ProbeRequest())
    assert exc.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert "AuthFailure" in (exc.value.details() or "")


TABLE = [
    (errors.InvalidArgument("x"), grpc.StatusCode.INVALID_ARGUMENT),
    (errors.NotFound("x"), grpc.StatusCode.NOT_FOUND),
    (errors.AlreadyExists("x"), grpc.StatusCode.ALREADY_EXISTS),
    (errors.OperationInProgress("x"), grpc.StatusCode.ABORTED),
    (errors.ResourceExhausted("x"), grpc.StatusCode.RESOURCE_EXHAUSTED),
    (errors.ModificationRateLimited("x"), grpc.StatusCode.RESOURCE_EXHAUSTED),
    (errors.OutOfRange("x"), grpc.StatusCode.OUT_OF_RANGE),
    (errors.FailedPrecondition("x"), grpc.StatusCode.FAILED_PRECONDITION),
    (errors.Unavailable("x"), grpc.StatusCode.UNAVAILABLE),
    (errors.DeadlineExceeded("x"), grpc.StatusCode.ABORTED),
    (errors.Unimplemented("x"), grpc.StatusCode.UNIMPLEMENTED),
    (errors.PermissionDenied("x"), grpc.StatusCode.PERMISSION_DENIED),
    (errors.Internal("x"), grpc.StatusCode.INTERNAL),
]


@pytest.mark.parametrize(("exc", "code"), TABLE)
def test_domain_errors_map_to_codes_over_the_wire(
    stubs: Stubs, controller: ScriptedController, exc: errors.ZonalError, code: grpc.StatusCode
) -> None:
    controller.raise_next = exc
    with pytest.raises(grpc.RpcError) as caught:
        stubs.controller.CreateVolume(csi_pb2.CreateVolumeRequest(name="n"))
    assert caught.value.code() == code
    assert caught.value.details() == "x"


def test_every_domain_error_has_a_code() -> None:
    def subclasses(cls: type) -> list[type]:
        out: list[type] = []
        sub: type
        for sub in cls.__subclasses__():
            out.append(sub)
            out.extend(subclasses(sub))
        return out

    domain = [cls for cls in subclasses(errors.ZonalError) if cls.__module__ == errors.__name__]
    assert errors.ModificationRateLimited in domain and len(domain) >= len(TABLE)
    for cls in domain:
        # A class with no row of its own nor an ancestor's would fall through to INTERNAL, which the
        # CSI tables reserve for bugs: every domain error must reach a row before ZonalError itself.
        rows = [c for c in cls.__mro__ if c in CODES]
        assert rows, f"{cls.__name__} has no row in provisioner.csi.errors.CODES"
        assert status_for(cls("m")) == (CODES[rows[0]], "m"), cls


def test_unexpected_exception_is_internal_with_generic_message(
    stubs: Stubs, controller: ScriptedController, caplog: pytest.LogCaptureFixture
) -> None:
    controller.raise_next = KeyError("secret internal detail")
    with caplog.at_level(logging.ERROR, logger="zonal.csi"), pytest.raises(grpc.RpcError) as caught:
        stubs.controller.CreateVolume(csi_pb2.CreateVolumeRequest(name="n"))
    assert caught.value.code() == grpc.StatusCode.INTERNAL
    assert caught.value.details() == GENERIC_INTERNAL
    assert "secret internal detail" not in (caught.value.details() or "")
    assert any("Traceback" in (r.exc_text or "") or r.exc_info for r in caplog.records)


def test_secrets_never_reach_the_log(
    stubs: Stubs, controller: ScriptedController, caplog: pytest.LogCaptureFixture
) -> None:
    controller.raise_next = errors.InvalidArgument("bad")
    request = csi_pb2.CreateVolumeRequest(
        name="pvc-1", secrets={"password": "hunter2"}, parameters={"type": "gp3"}
    )
    with caplog.at_level(logging.DEBUG, logger="zonal.csi"), pytest.raises(grpc.RpcError):
        stubs.controller.CreateVolume(request)
    text = "\n".join(r.getMessage() for r in caplog.records)
    assert "pvc-1" in text and "gp3" in text
    assert "hunter2" not in text
    assert "stripped" in text
    assert any(getattr(r, "csi_name", None) == "pvc-1" for r in caplog.records)


def test_log_lines_of_a_call_share_its_request_id(
    stubs: Stubs, controller: ScriptedController, caplog: pytest.LogCaptureFixture
) -> None:
    controller.gate.set()
    with caplog.at_level(logging.INFO, logger="zonal.csi"):
        stubs.controller.CreateVolume(csi_pb2.CreateVolumeRequest(name="pvc-a"))
        stubs.controller.CreateVolume(csi_pb2.CreateVolumeRequest(name="pvc-b"))
    records = [r for r in caplog.records if getattr(r, "rpc", None) == "CreateVolume"]
    assert [r.getMessage().split()[1] for r in records] == ["request", "ok", "request", "ok"]
    ids = [getattr(r, "request_id", "") for r in records]
    assert all(len(i) == 8 for i in ids)
    assert ids[0] == ids[1] != ids[2] == ids[3]
    assert [getattr(r, "csi_name", None) for r in records] == ["pvc-a", "pvc-a", "pvc-b", "pvc-b"]


def test_a_failure_is_logged_with_its_context_when_info_is_off(
    stubs: Stubs, controller: ScriptedController, caplog: pytest.LogCaptureFixture
) -> None:
    controller.raise_next = errors.NotFound("no such volume")
    with caplog.at_level(logging.WARNING, logger="zonal.csi"), pytest.raises(grpc.RpcError):
        stubs.controller.CreateVolume(csi_pb2.CreateVolumeRequest(name="pvc-1"))
    (record,) = caplog.records
    assert record.levelno == logging.WARNING
    assert "NOT_FOUND no such volume" in record.getMessage()
    assert getattr(record, "rpc", None) == "CreateVolume"
    assert getattr(record, "csi_name", None) == "pvc-1"
    assert len(getattr(record, "request_id", "")) == 8


def test_probe_is_logged_at_debug_with_a_request_id(stubs: Stubs, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.DEBUG, logger="zonal.csi"):
        stubs.identity.Probe(csi_pb2.ProbeRequest())
    records = [r for r in caplog.records if getattr(r, "rpc", None) == "Probe"]
    assert [r.levelno for r in records] == [logging.DEBUG, logging.DEBUG]
    assert len({getattr(r, "request_id", None) for r in records}) == 1


def test_probe_is_logged_quietly(stubs: Stubs, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.INFO, logger="zonal.csi"):
        stubs.identity.Probe(csi_pb2.ProbeRequest())
    assert not [r for r in caplog.records if r.levelno >= logging.INFO]


def test_hundred_slow_calls_do_not_queue_cheap_ones(stubs: Stubs, controller: ScriptedController) -> None:
    pool = futures.ThreadPoolExecutor(max_workers=120)
    try:
        slow = [
            pool.submit(stubs.controller.CreateVolume, csi_pb2.CreateVolumeRequest(name=f"v{i}"), timeout=60)
            for i in range(110)
        ]
        deadline = time.monotonic() + 20
        while controller.started < 110 and time.monotonic() < deadline:
            time.sleep(0.01)
        assert controller.started == 110  # all in flight at once, none queued
        for _ in range(20):
            stubs.identity.Probe(csi_pb2.ProbeRequest(), timeout=60)
        # The slow calls hold their threads until the gate opens (or 30 s pass): probes queued behind
        # them could only have been answered after some of them ended.
        assert not [f for f in slow if f.done()]
        controller.gate.set()
        assert all(f.result(timeout=30).volume.volume_id == "vol-1" for f in slow)
    finally:
        controller.gate.set()
        pool.shutdown(wait=True)


class DeadlineRecorder(csi_pb2_grpc.ControllerServicer):
    def __init__(self) -> None:
        self.remaining: list[float | None] = []
        self.headroom: list[float] = []

    def CreateVolume(
        self, request: csi_pb2.CreateVolumeRequest, context: grpc.ServicerContext
    ) -> csi_pb2.CreateVolumeResponse:
        deadline = current_deadline()
        self.remaining.append(None if deadline is None else deadline.remaining())
        left = None if deadline is None else deadline.remaining()
        caller_left = context.time_remaining()
        if left is not None and caller_left is not None:
            self.headroom.append(caller_left - left)
        return csi_pb2.CreateVolumeResponse(volume=csi_pb2.Volume(volume_id="vol-1"))


def test_the_callers_deadline_reaches_the_adapters(tmp_path: Path) -> None:
    recorder = DeadlineRecorder()  # type: ignore[abstract]
    identity = IdentityService("test.csi.dev", "1", controller=True)
    with (
        running_server(tmp_path, Services(identity=identity, controller=recorder)) as srv,
        channel(srv) as ch,
    ):
        Stubs(ch).controller.CreateVolume(csi_pb2.CreateVolumeRequest(name="n"), timeout=30)
        Stubs(ch).controller.CreateVolume(csi_pb2.CreateVolumeRequest(name="n"))
    first, second = recorder.remaining
    assert first is not None and 20 < first <= 31  # grpc rounds the deadline it carries
    assert second is None  # no deadline sent: unbounded
    # One deadline, computed once with its headroom: it ends DEADLINE_HEADROOM before the caller's.
    (headroom,) = recorder.headroom
    assert DEADLINE_HEADROOM - 0.05 < headroom < DEADLINE_HEADROOM + 0.05
    assert current_deadline() is None  # the scope ended with the call


def test_serving_until_signalled_freezes_what_start_up_built(tmp_path: Path) -> None:
    identity = IdentityService("test.csi.dev", "1", controller=False)
    before = signal.getsignal(signal.SIGTERM)

    def terminate_once_handled() -> None:
        deadline = time.monotonic() + 10
        while signal.getsignal(signal.SIGTERM) is before and time.monotonic() < deadline:
            time.sleep(0.01)
        if signal.getsignal(signal.SIGTERM) is not before:  # never kill the test run itself
            os.kill(os.getpid(), signal.SIGTERM)

    with running_server(tmp_path, Services(identity=identity), mode="node") as srv:
        sender = threading.Thread(target=terminate_once_handled)
        sender.start()
        try:
            serve_until_signalled(srv, grace=0)
            assert gc.get_freeze_count() > 0
        finally:
            sender.join()
            gc.unfreeze()
    assert signal.getsignal(signal.SIGTERM) is before
