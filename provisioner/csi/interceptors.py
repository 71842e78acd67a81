"""The one interceptor layer every RPC passes through.

It does four things, in this order around the servicer method:
1. gives the call a short request id and logs the request with secrets stripped (fields the CSI
   proto marks ``csi_secret``) and long values shortened, quietly (DEBUG) for Probe and other cheap
   polling calls;
2. refuses what no servicer could use, with INVALID_ARGUMENT: bytes that do not decode as the
   request message (gRPC itself would answer INTERNAL), and NUL in any string (see
   :mod:`provisioner.csi.limits`);
3. bounds the call by the caller's deadline: computed here once, with :data:`DEADLINE_HEADROOM` taken
   off, and made :func:`provisioner.ports.clock.current_deadline` for everything that waits below (the
   controller core's waiter through its servicer, the EC2 adapter's retries and rate-limit waits, the
   node's commands);
4. turns exceptions into status codes by :func:`provisioner.csi.errors.status_for` — domain errors
   keep their message (capped in length), anything else becomes INTERNAL with a generic message and a
   logged traceback;
5. logs the outcome with its duration, and reports it to the metrics hook when one is installed.

Servicers therefore never catch exceptions or call ``context.abort`` themselves.
"""

from __future__ import annotations

import itertools
import logging
import os
import time
from collections.abc import Callable
from typing import Any, Protocol

import grpc
from google.protobuf import json_format
from google.protobuf.descriptor import FieldDescriptor
from google.protobuf.message import DecodeError, Message

from provisioner.csi.errors import status_for
from provisioner.csi.limits import is_secret, refuse_nul
from provisioner.errors import InvalidArgument, ZonalError, shown
from provisioner.ports.clock import Deadline, SystemClock, deadline_scope

log = logging.getLogger("zonal.csi")

# Called every few seconds by kubelet, sidecars and livenessprobe: logged at DEBUG only.
QUIET_METHODS = frozenset(
    {
        "Probe",
        "GetPluginInfo",
        "GetPluginCapabilities",
        "ControllerGetCapabilities",
        "NodeGetCapabilities",
        "NodeGetInfo",
        "NodeGetVolumeStats",
        "Check",
    }
)
_CLOCK = SystemClock()
# Answer a little before the caller gives up, so it gets our ABORTED rather than its own timeout.
DEADLINE_HEADROOM = 0.25
# Request ids: a per-process random start, then counting (cheaper than a uuid per call).
_REQUEST_IDS = itertools.count(int.from_bytes(os.urandom(4), "big"))
_OK = grpc.StatusCode.OK.name  # StatusCode.name is a slow enum property: looked up once
_ID_FIELDS = ("volume_id", "node_id", "snapshot_id", "source_volume_id", "name")
# Log lines quote a request's values up to this many characters, and this many items of a list or map.
_LOG_VALUE_LIMIT = 200
_LOG_ITEMS_LIMIT = 32


class RpcObserver(Protocol):
    """Receives one record per finished RPC (the metrics module implements it)."""

    def observe_rpc(self, method: str, code: str, seconds: float) -> None: ...


_secret_cache: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {}


def _secret_plan(desc: Any) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """(secret field names, message-typed field names to descend into) for a message type."""
    plan = _secret_cache.get(desc.full_name)
    if plan is None:
        secrets = tuple(f.name for f in desc.fields if is_secret(f))
        nested = tuple(
            f.name
            for f in desc.fields
            if f.type == FieldDescriptor.TYPE_MESSAGE
            and f.message_type is not None
            and not f.message_type.GetOptions().map_entry
            and not is_secret(f)
        )
        plan = (secrets, nested)
        _secret_cache[desc.full_name] = plan
    return plan


def _strip(msg: Message) -> None:
    secrets, nested = _secret_plan(msg.DESCRIPTOR)
    for name in secrets:
        msg.ClearField(name)
    for name in nested:
        value = getattr(msg, name)
        if isinstance(value, Message):
            if msg.HasField(name):
                _strip(value)
        else:  # repeated message field
            for item in value:
                _strip(item)


def redacted(msg: Message) -> dict[str, Any]:
    """The message as a dict for logging, with every ``csi_secret`` field removed (at any depth) and
    long values shortened, so a client's 4 MB request never becomes a 4 MB log line."""
    copy = type(msg)()
    copy.CopyFrom(msg)
    _strip(copy)
    secrets, _ = _secret_plan(msg.DESCRIPTOR)
    out: dict[str, Any] = json_format.MessageToDict(copy, preserving_proto_field_name=True)
    for name in secrets:
        if name in msg.DESCRIPTOR.fields_by_name and _has_content(msg, name):
            out[name] = "***stripped***"
    shortened: dict[str, Any] = _shortened(out)
    return shortened


def _shortened(value: Any) -> Any:
    if isinstance(value, str):
        return value if len(value) <= _LOG_VALUE_LIMIT else shown(value, _LOG_VALUE_LIMIT)
    if isinstance(value, dict):
        items = list(value.items())
        out = {_shortened(k): _shortened(v) for k, v in items[:_LOG_ITEMS_LIMIT]}
        if len(items) > _LOG_ITEMS_LIMIT:
            out["…"] = f"{len(items) - _LOG_ITEMS_LIMIT} more entries"
        return out
    if isinstance(value, list):
        cut = [_shortened(v) for v in value[:_LOG_ITEMS_LIMIT]]
        if len(value) > _LOG_ITEMS_LIMIT:
            cut.append(f"… {len(value) - _LOG_ITEMS_LIMIT} more")
        return cut
    return value


def _has_content(msg: Message, name: str) -> bool:
    value = getattr(msg, name)
    try:
        return bool(len(value))
    except TypeError:
        return bool(value)


_id_fields: dict[str, tuple[str, ...]] = {}


def request_ids(msg: Message) -> dict[str, str]:
    """The identifying fields of a request (volume, node, snapshot ids, name) for log lines."""
    out: dict[str, str] = {}
    names = _id_fields.get(msg.DESCRIPTOR.full_name)
    if names is None:
        present = msg.DESCRIPTOR.fields_by_name
        names = _id_fields[msg.DESCRIPTOR.full_name] = tuple(n for n in _ID_FIELDS if n in present)
    for name in names:
        value = getattr(msg, name)
        if isinstance(value, str) and value:
            # "name" is reserved by logging.LogRecord: log the volume/snapshot name as csi_name.
            out["csi_name" if name == "name" else name] = value if len(value) <= 100 else shown(value)
    return out


class _Undecodable:
    """What the deserializer hands on when the bytes are not the request message: the servicer wrapper
    answers INVALID_ARGUMENT (gRPC would answer INTERNAL "Exception deserializing request!")."""

    def __init__(self, type_name: str, error: Exception) -> None:
        self.type_name = type_name
        self.error = error


def _lenient(deserialize: Callable[[bytes], Any] | None, type_name: str) -> Callable[[bytes], Any] | None:
    if deserialize is None:
        return None

    def decode(data: bytes) -> Any:
        try:
            return deserialize(data)
        except (DecodeError, UnicodeDecodeError, ValueError) as e:
            return _Undecodable(type_name, e)

    return decode


class CsiInterceptor(grpc.ServerInterceptor):  # type: ignore[misc]
    """Logging, error mapping and metrics for unary-unary CSI calls."""

    def __init__(self, observer: RpcObserver | None = None) -> None:
        self._observer = observer
        self._handlers: dict[str, grpc.RpcMethodHandler] = {}

    def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], grpc.RpcMethodHandler | None],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler | None:
        full_method: str = handler_call_details.method
        # grpc asks for the handler on every call: build each method's wrapper once.
        cached = self._handlers.get(full_method)
        if cached is not None:
            return cached
        handler = continuation(handler_call_details)
        # Only CSI calls: the health service speaks raw bytes and is polled constantly.
        if handler is None or handler.unary_unary is None or not full_method.startswith("/csi.v1."):
            return handler
        method = full_method.rsplit("/", 1)[-1]
        wrapped = grpc.unary_unary_rpc_method_handler(
            self._wrap(method, handler.unary_unary),
            request_deserializer=_lenient(handler.request_deserializer, f"{method}Request"),
            response_serializer=handler.response_serializer,
        )
        self._handlers[full_method] = wrapped
        return wrapped

    def _wrap(self, method: str, behavior: Callable[[Any, grpc.ServicerContext], Any]) -> Callable[..., Any]:
        # Everything that depends only on the method is decided here, once: this runs per call.
        observer = self._observer
        quiet = method in QUIET_METHODS
        level = logging.DEBUG if quiet else logging.INFO
        fail_level = logging.DEBUG if quiet else logging.WARNING
        enabled = log.isEnabledFor
        request_id = _REQUEST_IDS.__next__
        clock = _CLOCK
        perf_counter = time.perf_counter

        def wrapped(request: Message | _Undecodable, context: grpc.ServicerContext) -> Any:
            rid = request_id()
            # The log context (request id, ids of the request) is only built when a line is written:
            # Probe and the other polled calls write none at the default level.
            logged = enabled(level)
            extra = _extra(method, rid, request) if logged else None
            if extra is not None:
                log.log(level, "%s request %s", method, _loggable(request), extra=extra)
            start = perf_counter()
            try:
                if isinstance(request, _Undecodable):
                    # CSI: an invalid request → INVALID_ARGUMENT, never INTERNAL.
                    raise InvalidArgument(
                        f"the request is not a valid csi.v1.{request.type_name}: {shown(str(request.error))}"
                    )
                refuse_nul(request)
                # The one deadline of this call, read by everything below that waits.
                with deadline_scope(Deadline(clock, _remaining(context))):
                    response = behavior(request, context)
            except ZonalError as exc:
                code, message = status_for(exc)
                extra = extra or _extra(method, rid, request)
                log.log(fail_level, "%s failed: %s %s", method, code.name, message, extra=extra)
                _finish(observer, method, code.name, start)
                context.abort(code, message)
            except Exception as exc:
                # Aborts raised by context.abort inside a servicer pass through untouched.
                if isinstance(exc, grpc.RpcError) or type(exc).__name__ == "_AbortedError":
                    raise
                code, message = status_for(exc)
                extra = extra or _extra(method, rid, request)
                log.exception("%s failed with an unexpected error", method, extra=extra)
                _finish(observer, method, code.name, start)
                context.abort(code, message)
            seconds = perf_counter() - start
            if observer is not None:
                observer.observe_rpc(method, _OK, seconds)
            if extra is not None:
                log.log(level, "%s ok in %.3fs %s", method, seconds, redacted(response), extra=extra)
            return response

        return wrapped


def _extra(method: str, rid: int, request: Message | _Undecodable) -> dict[str, str]:
    """The fields every log line of one call carries (see ``provisioner.cli.logs``)."""
    ids = {} if isinstance(request, _Undecodable) else request_ids(request)
    return {"rpc": method, "request_id": f"{rid:08x}", **ids}


def _loggable(request: Message | _Undecodable) -> Any:
    return "(undecodable)" if isinstance(request, _Undecodable) else redacted(request)


def _remaining(context: grpc.ServicerContext) -> float | None:
    """Seconds left before the caller's deadline less the headroom; None when it sent none (grpc says
    "infinite")."""
    left: float | None = context.time_remaining()
    return None if left is None or left > 1e9 else max(0.0, left - DEADLINE_HEADROOM)


def _finish(observer: RpcObserver | None, method: str, code: str, start: float) -> None:
    if observer is not None:
        observer.observe_rpc(method, code, time.perf_counter() - start)
