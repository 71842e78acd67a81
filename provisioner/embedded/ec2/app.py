"""The simulator: a WSGI application in front of moto's EC2 that throttles, delays, injects faults,
counts, and (through :mod:`provisioner.embedded.ec2.state`) gives volumes real lifecycles.

One :class:`Simulator` is one AWS account. Every request goes: count → token bucket → injected fault →
latency → moto (under one lock, with the graft active) → hooks. Both ways of running it use this
same path: :meth:`Simulator.install` routes a boto3 client's requests here without sockets, and
:class:`provisioner.embedded.ec2.server.SimServer` serves it over HTTP. This module must not open
sockets.
"""

from __future__ import annotations

import io
import itertools
import json
import logging
import os
import re
import threading
from collections.abc import Callable, Iterable
from functools import cache
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qsl, urlencode, urlsplit

import boto3.session
import botocore.loaders
import botocore.session
from botocore.awsrequest import AWSPreparedRequest, AWSResponse
from botocore.config import Config
from werkzeug.test import EnvironBuilder, run_wsgi_app

from provisioner.embedded.ec2 import extras, fasttags, wire
from provisioner.embedded.ec2.buckets import Buckets
from provisioner.embedded.ec2.config import SimConfig
from provisioner.embedded.ec2.counters import Counters
from provisioner.embedded.ec2.events import (
    Attached,
    Deleted,
    Detached,
    HookEvent,
    Resized,
    SnapshotCreated,
    SnapshotDeleted,
    VolumeRestored,
)
from provisioner.embedded.ec2.faults import Chance, Fault
from provisioner.embedded.ec2.hooks import VolumeHooks
from provisioner.embedded.ec2.state import Graft, Lifecycle, RequestContext, backend_for, request_context
from provisioner.ports.clock import Clock, SystemClock

if TYPE_CHECKING:
    from mypy_boto3_ec2 import EC2Client

log = logging.getLogger(__name__)

# Clients routed in process are given this endpoint, so a request that somehow escaped the hook could
# never reach a real AWS endpoint (.invalid never resolves).
IN_PROCESS_ENDPOINT = "http://ec2.zonal-sim.invalid"
DEFAULT_AMI = "ami-12c6146b"  # moto does not validate image ids unless asked to

Environ = dict[str, Any]
StartResponse = Callable[[str, list[tuple[str, str]]], Any]
Answer = tuple[str, list[tuple[str, str]], bytes]

_account_seq = itertools.count(1)
_INSTANCE_ID = re.compile(rb"<instanceId>(i-[0-9a-f]+)</instanceId>")
# How moto's dispatcher says it has no method for an action (moto/core/responses.py call_action).
_MOTO_UNKNOWN_ACTION = re.compile(r"The (\w+) action has not been implemented")


def _fresh_account_id() -> str:
    return f"7{os.getpid() % 100000:05d}{next(_account_seq):06d}"


@cache
def _moto_ec2_app() -> Any:
    """moto's EC2 Flask application (built once per process: it takes a second or two)."""
    from moto.moto_server.werkzeug_app import create_backend_app

    return create_backend_app("ec2")


@cache
def _shared_loader() -> botocore.loaders.Loader:
    """One data loader for every client :meth:`Simulator.client` builds: loading the EC2 model anew
    for each would cost a third of a second per client."""
    return botocore.loaders.create_loader()


def _known_zones(region: str) -> list[str]:
    from moto.ec2.models.availability_zones_and_regions import RegionsAndZonesBackend

    zones = RegionsAndZonesBackend.zones.get(region)
    if not zones:
        raise ValueError(f"moto knows no zones for region {region!r}")
    return [z.name for z in zones]


def resolve_zones(config: SimConfig) -> tuple[str, ...]:
    """The zones the simulator offers: the configured ones (checked) or moto's first three."""
    known = _known_zones(config.region)
    if not config.zones:
        return tuple(known[:3])
    unknown = [z for z in config.zones if z not in known]
    if unknown:
        raise ValueError(f"zones {unknown} are not in {config.region} (moto knows {known})")
    return tuple(config.zones)


def _status(code: int) -> str:
    return {
        200: "200 OK",
        400: "400 Bad Request",
        404: "404 Not Found",
        500: "500 Internal Server Error",
    }.get(code, "503 Service Unavailable" if code == 503 else f"{code} Error")


class _RawBody(io.BytesIO):
    """The raw stream botocore reads an ``AWSResponse`` body from."""

    def stream(self, **kwargs: Any) -> Iterable[bytes]:
        chunk = self.read()
        while chunk:
            yield chunk
            chunk = self.read()


class Simulator:
    """One simulated account. Thread-safe; a WSGI application (``simulator(environ, start_response)``)."""

    def __init__(
        self, config: SimConfig | None = None, clock: Clock | None = None, hooks: VolumeHooks | None = None
    ) -> None:
        self.config = config or SimConfig()
        self.clock: Clock = clock or SystemClock()
        self.hooks = hooks
        self.account_id = self.config.account_id or _fresh_account_id()
        self.region = self.config.region
        self.zones = resolve_zones(self.config)
        self.counters = Counters()
        self.buckets = Buckets(
            self.clock,
            self.config.scale,
            self.config.throttling,
            self.config.burst_scale,
            self.config.neighbours,
        )
        self._chance = Chance(self.config)
        self._life = Lifecycle(self.clock, self.config.delays, self._chance, self.zones)
        # Fast snapshot restores, snapshot locks, volume status: what moto lacks (extras.py).
        self.extras = extras.Extras(self.clock, self.zones, self.config.delays.snapshot)
        self._lock = threading.RLock()
        self._moto = _moto_ec2_app()
        fasttags.install(self.account_id)  # moto's own get_tags is O(all tags) per resource

    # --- the request path ---------------------------------------------------------------------------

    def __call__(self, environ: Environ, start_response: StartResponse) -> Iterable[bytes]:
        status, headers, body = self.handle(environ)
        start_response(status, [*headers, ("Content-Length", str(len(body)))])
        return [body]

    def handle(self, environ: Environ) -> Answer:
        path = environ.get("PATH_INFO", "/")
        if path.startswith("/_zonal/"):
            return self._control(environ["REQUEST_METHOD"], path, environ.get("QUERY_STRING", ""))
        stream = environ["wsgi.input"]
        length = int(environ.get("CONTENT_LENGTH") or 0)
        body: bytes = stream.read(length) if length else b""
        params = wire.parse_params(body, environ.get("QUERY_STRING", ""))
        action = params.get("Action")
        if not action:
            return self._error(400, "MissingAction", "The request must contain the parameter Action")
        region = wire.region_of(environ.get("HTTP_AUTHORIZATION")) or self.region
        self.counters.call(action)
        if not self.buckets.take(region, action, params):
            return self._throttled(action)
        fault = self._chance.fault()
        if fault is Fault.THROTTLE:
            return self._throttled(action)
        if fault is Fault.SERVER_ERROR:
            self.counters.error(action, "InternalError")
            return self._error(500, "InternalError", "An internal error has occurred")
        latency = self._chance.latency(action)
        if latency > 0:
            self.clock.sleep(latency)
        ctx = RequestContext(action, params.get("ClientToken") or None, wire.signature(params))
        own: Answer | None = None
        if action in extras.ACTIONS or action in extras.REFUSED:
            with self._lock:
                own = self._extras(action, params, region)
        if own is None:
            status, headers, out = self._call_moto(environ, body, region, ctx)
        else:
            status, headers, out = own
        if int(status[:3]) >= 400:
            self.counters.error(action, wire.error_code(out))
            return status, headers, out
        if own is None and action in extras.OBSERVED:
            with self._lock:
                self.extras.observe(action, params, out, self._backend(region))
        try:
            self._run_hooks(ctx.events)
        except Exception:
            log.exception("simulator hook failed for %s", action)
            self.counters.error(action, "InternalError")
            return self._error(500, "InternalError", "An internal error has occurred")
        return status, headers, out

    def _extras(self, action: str, params: dict[str, str], region: str) -> Answer | None:
        """The answer of an action moto lacks, or a refusal moto would not make; None: ask moto."""
        if action in extras.ACTIONS:
            return self.extras.answer(action, params, self._backend(region))
        return self.extras.refusal(action, params)

    def _throttled(self, action: str) -> Answer:
        self.counters.throttled(action)
        # EC2 throttles with HTTP 503 and this code; SDKs retry it with backoff.
        return self._error(503, "RequestLimitExceeded", "Request limit exceeded.")

    @staticmethod
    def _error(code: int, error: str, message: str) -> Answer:
        return _status(code), list(wire.XML_HEADERS), wire.error_body(error, message)

    def _backend(self, region: str) -> Any:
        return backend_for(self.account_id, region)

    def _call_moto(self, environ: Environ, body: bytes, region: str, ctx: RequestContext) -> Answer:
        env = dict(environ)
        env["wsgi.input"] = io.BytesIO(body)
        env["CONTENT_LENGTH"] = str(len(body))
        env["HTTP_X_MOTO_ACCOUNT_ID"] = self.account_id
        env.setdefault("HTTP_AUTHORIZATION", wire.synthetic_authorization(region))
        with self._lock, request_context(ctx):
            Graft.of(self._backend(region), self._life).settle()
            try:
                app_iter, status, headers = run_wsgi_app(self._moto, env)
            except NotImplementedError as e:
                return self._not_implemented(ctx.action, e)
            try:
                out = b"".join(app_iter)
            finally:
                close = getattr(app_iter, "close", None)
                if close is not None:
                    close()
        kept = [
            (k, v) for k, v in headers.items() if k.lower() not in ("content-length", "transfer-encoding")
        ]
        return status, kept, out

    def _not_implemented(self, action: str, error: NotImplementedError) -> Answer:
        """moto raises NotImplementedError for what it lacks; answered as a 500 botocore would retry
        it, so it becomes a 400 that says what EC2 would (or that the simulator cannot do it)."""
        unknown = _MOTO_UNKNOWN_ACTION.search(str(error))
        if unknown is not None:
            # EC2's answer to an action it does not offer (botocore does not retry a 400).
            return self._error(
                400, "InvalidAction", f"The action {action} is not valid for this web service."
            )
        # An action moto has, asked for a part of it moto lacks (a filter, a parameter).
        return self._error(
            400, "UnsupportedOperation", f"The simulator does not support this request: {error}"
        )

    def _run_hooks(self, events: list[HookEvent]) -> None:
        hooks = self.hooks
        if hooks is None:
            return
        for event in events:
            match event:
                case Attached(volume_id, instance_id, device, size_gib):
                    hooks.attached(volume_id, instance_id, device, size_gib)
                case Detached(volume_id, instance_id):
                    hooks.detached(volume_id, instance_id)
                case Deleted(volume_id):
                    hooks.deleted(volume_id)
                case Resized(volume_id, size_gib):
                    hooks.resized(volume_id, size_gib)
                # The snapshot hooks are optional (SnapshotHooks): a plain VolumeHooks lacks them.
                case SnapshotCreated(snapshot_id, volume_id):
                    if (created := getattr(hooks, "snapshot_created", None)) is not None:
                        created(snapshot_id, volume_id)
                case VolumeRestored(volume_id, snapshot_id, size_gib):
                    if (restored := getattr(hooks, "volume_restored", None)) is not None:
                        restored(volume_id, snapshot_id, size_gib)
                case SnapshotDeleted(snapshot_id):
                    if (dropped := getattr(hooks, "snapshot_deleted", None)) is not None:
                        dropped(snapshot_id)

    # --- control plane (never counted or throttled) -------------------------------------------------

    def describe(self) -> dict[str, object]:
        return {
            "account_id": self.account_id,
            "region": self.region,
            "zones": list(self.zones),
            "scale": self.config.scale,
            "burst_scale": self.config.burst_scale,
            "neighbours": dict(self.config.neighbours),
            "throttling": self.config.throttling,
        }

    def _control(self, method: str, path: str, query: str) -> Answer:
        args = dict(parse_qsl(query))
        try:
            if path == "/_zonal/counters" and method == "GET":
                return self._json(self.counters.as_json())
            if path == "/_zonal/counters" and method == "DELETE":
                self.counters.reset()
                return self._json({})
            if path == "/_zonal/config" and method == "GET":
                return self._json(self.describe())
            if path == "/_zonal/volumes" and method == "GET":
                return self._json(self.ready_times())
            if path == "/_zonal/neighbours" and method == "GET":
                action = args.get("action", "")
                return self._json({"action": action, "spent": self.buckets.neighbour_spent(action)})
            if path == "/_zonal/instances" and method == "POST":
                instance_id = self.create_instance(
                    args.get("zone", self.zones[0]), args.get("type", "m5.large")
                )
                return self._json({"instance_id": instance_id})
        except ValueError as e:
            return "400 Bad Request", list(wire.JSON_HEADERS), json.dumps({"error": str(e)}).encode()
        return "404 Not Found", list(wire.JSON_HEADERS), b'{"error": "no such control path"}'

    @staticmethod
    def _json(value: object) -> Answer:
        return "200 OK", list(wire.JSON_HEADERS), json.dumps(value).encode()

    # --- helpers for tests and the embedded cloud ---------------------------------------------------

    def ready_times(self) -> dict[str, float]:
        """When each volume left (or leaves) ``creating``, in seconds since the epoch on the simulator's
        clock: EC2's CreateTime has whole seconds only, too coarse for benchmarks that time the waits."""
        offset = self.clock.time() - self.clock.monotonic()
        with self._lock:
            volumes = list(self._backend(self.region).volumes.values())
        return {v.id: v._zonal_ready_at + offset for v in volumes if hasattr(v, "_zonal_ready_at")}

    def create_instance(self, zone: str, instance_type: str = "m5.large") -> str:
        """Start an instance in ``zone`` (the embedded node, a test's node) without counting or
        throttling the call; return its id."""
        if zone not in self.zones:
            raise ValueError(f"zone {zone!r} is not one of {list(self.zones)}")
        params = {
            "Action": "RunInstances",
            "Version": "2016-11-15",
            "ImageId": DEFAULT_AMI,
            "MinCount": "1",
            "MaxCount": "1",
            "InstanceType": instance_type,
            "Placement.AvailabilityZone": zone,
        }
        body = urlencode(params).encode()
        builder = EnvironBuilder(
            method="POST",
            base_url=IN_PROCESS_ENDPOINT,
            path="/",
            headers=[("Content-Type", "application/x-www-form-urlencoded; charset=utf-8")],
            data=body,
        )
        try:
            environ = builder.get_environ()
        finally:
            builder.close()
        status, _, out = self._call_moto(environ, body, self.region, RequestContext("RunInstances"))
        match = _INSTANCE_ID.search(out)
        if int(status[:3]) >= 400 or match is None:
            raise ValueError(f"RunInstances failed: {wire.error_code(out)}")
        return match.group(1).decode()

    def install(self, client: Any) -> None:
        """Route ``client``'s requests to this simulator in process (no socket). The client needs
        credentials of some kind to sign with; their values are not checked."""
        client.meta.events.register("before-send.ec2", self._before_send)

    def client(self, region: str | None = None, config: Config | None = None) -> EC2Client:
        """A boto3 EC2 client already routed here (dummy credentials, an endpoint that never resolves)."""
        core = botocore.session.get_session()
        core.register_component("data_loader", _shared_loader())
        session = boto3.session.Session(
            aws_access_key_id="zonal-sim",
            aws_secret_access_key="zonal-sim",
            region_name=region or self.region,
            botocore_session=core,
        )
        ec2 = session.client("ec2", endpoint_url=IN_PROCESS_ENDPOINT, config=config)
        self.install(ec2)
        return ec2

    def _before_send(self, request: AWSPreparedRequest, **kwargs: Any) -> AWSResponse:
        url = urlsplit(request.url)
        headers = {k: v.decode() if isinstance(v, bytes) else str(v) for k, v in request.headers.items()}
        body = request.body
        if body is None:
            data = b""
        elif isinstance(body, str):
            data = body.encode()
        elif isinstance(body, bytes | bytearray):
            data = bytes(body)
        else:
            raw = body.read()
            data = raw.encode() if isinstance(raw, str) else raw
        builder = EnvironBuilder(
            method=request.method,
            base_url=f"{url.scheme}://{url.netloc}",
            path=url.path or "/",
            query_string=url.query,
            headers=list(headers.items()),
            data=data,
        )
        try:
            environ = builder.get_environ()
        finally:
            builder.close()
        status, out_headers, out = self.handle(environ)
        return AWSResponse(request.url, int(status[:3]), dict(out_headers), _RawBody(out))  # type: ignore[arg-type]
