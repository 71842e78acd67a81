"""ControllerCore: the CSI Controller service's behaviour over the Cloud port.

Takes model values (never protobuf) and a :class:`~provisioner.ports.clock.Deadline`, raises domain
errors (never gRPC codes), waits with the injected clock. It must not import an adapter, grpc or
boto3; the servicer in ``provisioner.csi`` converts and delegates.

CreateVolume in short: validate → in-flight guard on the name → choose a zone → CreateVolume with
ClientToken = sha256(name) → wait for ``available`` → answer with the zone EC2 reports. Documented
choices:

* Idempotency is EC2's ClientToken (see :mod:`.tokens`), not a lookup by name before every create: a
  retry gets the first call's volume from EC2 itself, and the name is looked up only when EC2 answers
  IdempotentParameterMismatch (the same name asked with other parameters: compatible → that volume,
  else ALREADY_EXISTS). ``ControllerConfig.lookup_before_create`` restores the lookup, one more
  DescribeVolumes per volume, for volumes of this name made by other means than this token.

* A volume that ends in EC2's ``error`` state is deleted and the call fails with INTERNAL (the cause
  is not known to be zone capacity, so the sidecar should retry on the same node rather than
  reschedule); the client token is then rotated so the retry creates a fresh volume.
* A wait that outlives the deadline raises DeadlineExceeded (ABORTED): the sidecar retries with the
  same name and finds the volume.
* Restore and clone (see :mod:`.sources`): the volume is at least its source's size (grown to it when
  the request is smaller, OUT_OF_RANGE only when ``limit_bytes`` forbids that); a clone is made in its
  source's zone. Snapshots are in :mod:`.snapshots`, expansion and modification in :mod:`.modify`.
* ListVolumes, ControllerGetVolume and ValidateVolumeCapabilities are in :mod:`.queries`.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import math
import threading
from collections.abc import Mapping, Sequence

from provisioner import params as P
from provisioner.config import ControllerConfig, DriverConfig
from provisioner.controller import drivertags
from provisioner.controller.attach import Attacher
from provisioner.controller.checks import check_capability, check_fs_type, check_tag_count, wants_multi_attach
from provisioner.controller.existing import NameRequest, check_existing, check_zone
from provisioner.controller.modify import Expanded, Modifier
from provisioner.controller.ownership import (
    check_deletable,
    ownership_tags,
    volume_label,
)
from provisioner.controller.pacing import LearnedPaces, creation_kind
from provisioner.controller.queries import Queries, RecentVolumes, Validation, VolumeStatus
from provisioner.controller.snapshots import Snapshotter
from provisioner.controller.sources import SourcePlan, Sources, size_for
from provisioner.controller.tokens import ClientTokens
from provisioner.controller.waiter import Waiter
from provisioner.errors import (
    AlreadyExists,
    FailedPrecondition,
    Internal,
    InvalidArgument,
    NotFound,
    OperationInProgress,
    Unimplemented,
    ZonalError,
    shown,
)
from provisioner.model import (
    GIB,
    TAG_VOLUME_NAME,
    ZONE_KEY,
    CapacityRange,
    ContentSource,
    Page,
    Snapshot,
    TopologyRequirement,
    Volume,
    VolumeCapability,
    VolumeSpec,
    VolumeState,
    is_volume_id,
)
from provisioner.ports.clock import Clock, Deadline
from provisioner.ports.cloud import Cloud
from provisioner.ports.csi import ControllerCapability, CreatedVolume, InFlight
from provisioner.topology.zones import ZoneChoice, choose_zone

SOURCE_ZONE = "source-volume"  # ZoneChoice.source of a clone: the zone of the volume it copies


# What ControllerGetCapabilities advertises: what this core implements, nothing more.
CAPABILITIES = frozenset(
    {
        ControllerCapability.CREATE_DELETE_VOLUME,
        ControllerCapability.PUBLISH_UNPUBLISH_VOLUME,
        ControllerCapability.LIST_VOLUMES,
        ControllerCapability.LIST_VOLUMES_PUBLISHED_NODES,
        ControllerCapability.GET_VOLUME,
        ControllerCapability.VOLUME_CONDITION,
        ControllerCapability.CLONE_VOLUME,
        ControllerCapability.CREATE_DELETE_SNAPSHOT,
        ControllerCapability.LIST_SNAPSHOTS,
        ControllerCapability.GET_SNAPSHOT,
        ControllerCapability.EXPAND_VOLUME,
        ControllerCapability.MODIFY_VOLUME,
    }
)


@dataclasses.dataclass(frozen=True)
class _Outcome:
    volume: Volume
    # True: EC2 answered with a volume an earlier request of this name made (judged compatible), which
    # is answered with once available, like a volume found by name.
    name_reused: bool = False


class ControllerCore:
    # The Identity service advertises ONLINE volume expansion: EBS grows attached volumes.
    online_expansion = True

    def __init__(
        self,
        cloud: Cloud,
        clock: Clock,
        driver: DriverConfig,
        config: ControllerConfig,
        logger: logging.Logger | None = None,
        inflight: InFlight | None = None,
    ) -> None:
        self.cloud = cloud
        self.clock = clock
        self.driver = driver
        self.config = config
        self.log = logger or logging.getLogger(__name__)
        self.waiter = Waiter(clock, config)
        # The waits for a new volume's `available` learn how long EC2 takes per kind of volume.
        self.paces = (
            LearnedPaces(config.wait_initial_delay, config.wait_factor, config.wait_max_delay)
            if config.learned_waits
            else None
        )
        self.inflight = inflight if inflight is not None else InFlight("controller")
        self.attacher = Attacher(cloud, self.waiter, config, self.inflight, self.log)
        self.snapshotter = Snapshotter(cloud, driver, config, self.inflight, self.log, clock)
        self.modifier = Modifier(cloud, self.waiter, config, self.log, driver.driver_name)
        self.sources = Sources(cloud, self.waiter, driver, self.log)
        self.tokens = ClientTokens(clock, config.token_mismatch_grace)
        self.recent = RecentVolumes(clock, config.validate_cache_seconds)
        self.queries = Queries(cloud, driver, self.recent)
        self._lock = threading.Lock()
        self._probe_ok_at: float | None = None

    # CreateVolume / DeleteVolume.

    def create_volume(
        self,
        name: str,
        capacity: CapacityRange,
        capabilities: Sequence[VolumeCapability],
        parameters: Mapping[str, str],
        mutable_parameters: Mapping[str, str],
        requirement: TopologyRequirement,
        source: ContentSource | None,
        deadline: Deadline | None,
    ) -> CreatedVolume:
        # CSI: missing name or capabilities → INVALID_ARGUMENT.
        if not name:
            raise InvalidArgument("name is required")
        if not capabilities:
            raise InvalidArgument("volume_capabilities is required")
        for capability in capabilities:
            check_capability(capability)
            check_fs_type(capability)
        # CSI 1.11: mutable_parameters (the VolumeAttributesClass) win over parameters.
        parsed = P.parse_parameters(parameters, mutable_parameters)
        for key in parsed.deprecated:
            self.log.info("volume %s: parameter %s is deprecated and has no effect", name, key)
        P.validate_format_options(parsed.volume_context, capabilities)
        multi_attach = any(wants_multi_attach(c) for c in capabilities)
        if multi_attach and parsed.volume_type != "io2":
            raise InvalidArgument(
                "parameter 'type': MULTI_NODE_MULTI_WRITER needs io2 (multi-attach), "
                f"not {parsed.volume_type}"
            )
        plan = self.sources.plan(source, requirement)
        size_gib = size_for(capacity, parsed.volume_type, plan)
        tags = {
            **drivertags.volume_driver_tags(self.driver, name, parameters),
            **parsed.tags,
            **drivertags.auto_iops_tags(self.driver, parsed),
            **plan.tags,
            **ownership_tags(self.driver),
            TAG_VOLUME_NAME: name,
        }
        check_tag_count(tags, "volume")
        spec = VolumeSpec(
            name=name,
            size_gib=size_gib,
            volume_type=parsed.volume_type,
            iops=P.total_iops(parsed, size_gib),
            throughput=parsed.throughput,
            encrypted=parsed.encrypted,
            kms_key_id=parsed.kms_key_id,
            multi_attach=multi_attach,
            snapshot_id=plan.snapshot_id,
            tags=tags,
            initialization_rate=parsed.initialization_rate if plan.snapshot_id or plan.clone_of else None,
        )
        until = self.waiter.deadline(deadline)
        with self.inflight.hold(f"create:{name}", f"creating volume {name}"):
            # A clone is looked up first: its retry would otherwise take a fresh intermediate snapshot
            # before EC2's token could answer with the first clone.
            if self.config.lookup_before_create or plan.clone_of:
                existing = self.cloud.find_volume_by_name(name)
                if existing is not None:
                    self._check_existing(existing, NameRequest(spec, capacity, requirement, plan))
                    return self._reuse(existing, parsed.volume_context, plan, until)
            if plan.zone:
                choice = ZoneChoice(plan.zone, SOURCE_ZONE)
            else:
                choice = choose_zone(
                    requirement, self.cloud.availability_zones(), name, self.config.default_zone
                )
            for skip in choice.skipped:
                self.log.warning(
                    "volume %s: skipped %s[%d] zone %s: %s",
                    name,
                    skip.source,
                    skip.index,
                    shown(skip.requested),
                    skip.reason,
                )
            self.log.info("volume %s: %s", name, choice.describe())
            request = NameRequest(spec, capacity, requirement, plan)
            if plan.clone_of:
                outcome = self._clone(request, until)
            else:
                with self.snapshotter.restoring(plan.snapshot_id):
                    outcome = self._create(request, spec, choice.zone)
                    if not outcome.name_reused:
                        outcome = _Outcome(self._wait_available(outcome.volume, until, fresh=True))
            if outcome.name_reused:
                return self._reuse(outcome.volume, parsed.volume_context, plan, until)
            return self._created(outcome.volume, parsed.volume_context, plan.source)

    def _reuse(
        self, existing: Volume, context: Mapping[str, str], plan: SourcePlan, until: Deadline
    ) -> CreatedVolume:
        """CSI: a compatible volume of this name exists → answer with it (once it is available)."""
        volume = self._wait_available(existing, until)
        if plan.clone_of:
            self.sources.remove_intermediate(volume.name)
        return self._created(volume, context, plan.source)

    def _clone(self, request: NameRequest, until: Deadline) -> _Outcome:
        """CopyVolumes if the endpoint has it, else snapshot-then-restore (see :mod:`.sources`)."""
        spec, plan = request.spec, request.plan
        try:
            outcome = self._create(request, spec, plan.zone, copy_from=plan.clone_of)
        except Unimplemented:
            snapshot = self.sources.intermediate_snapshot(spec.name, plan.clone_of, until)
            restored = dataclasses.replace(spec, snapshot_id=snapshot.snapshot_id)
            with self.snapshotter.restoring(snapshot.snapshot_id):
                outcome = self._create(request, restored, plan.zone)
                if outcome.name_reused:
                    return outcome
                volume = self._wait_available(outcome.volume, until, fresh=True)
            self.sources.remove_intermediate(spec.name)
            return _Outcome(volume)
        if outcome.name_reused:
            return outcome
        return _Outcome(self._wait_available(outcome.volume, until, fresh=True, copied=True))

    def _create(self, request: NameRequest, spec: VolumeSpec, zone: str, copy_from: str = "") -> _Outcome:
        """CreateVolume (or CopyVolumes) with the name's current client token; no lookup by name first.

        EC2 answers a token it has seen with that request's volume — a retry; EC2 ignores the zone when
        comparing, so the volume's zone is checked against the requirement — or with that volume deleted
        (the name is being reused: the token is rotated and the call made once more), or with
        IdempotentParameterMismatch when the parameters differ (see :meth:`_token_mismatch`)."""
        for _ in (1, 2):
            token = self.tokens.current(spec.name)
            try:
                if copy_from:
                    volume = self.cloud.copy_volume(copy_from, spec, token)
                else:
                    volume = self.cloud.create_volume(spec, zone, token)
            except AlreadyExists as e:
                existing = self._token_mismatch(spec.name, e)
                if existing is not None:
                    self._check_existing(existing, request)
                    return _Outcome(existing, name_reused=True)
                continue
            if volume.state in (VolumeState.DELETING, VolumeState.DELETED):
                self.tokens.rotate(spec.name)
                continue
            if volume.zone != zone:  # the volume an earlier call made in another zone: not this choice
                self._check_zone(volume, request.requirement)
                return _Outcome(volume, name_reused=True)
            self.log.info("created volume %s for %s in %s", volume.volume_id, spec.name, volume.zone)
            return _Outcome(volume)
        raise OperationInProgress(f"EC2 keeps answering with deleted volumes for {spec.name}; retry later")

    def _token_mismatch(self, name: str, e: AlreadyExists) -> Volume | None:
        """EC2 holds an earlier request with this token and other parameters (IdempotentParameterMismatch).

        A visible volume of that name → returned for the caller to judge (compatible → answered with,
        else ALREADY_EXISTS). None visible yet → ABORTED until the grace has passed (see
        :class:`~.tokens.ClientTokens`), then the token is replaced and None returned (make the call)."""
        existing = self.cloud.find_volume_by_name(name)
        if existing is not None:
            return existing
        if not self.tokens.mismatch_outlived_grace(name):
            raise OperationInProgress(
                f"EC2 holds an earlier CreateVolume for {name} with other parameters ({e.message}) and no "
                "volume of that name is visible yet; retrying before making a new request"
            ) from e
        self.tokens.rotate(name)
        return None

    def _check_existing(self, existing: Volume, request: NameRequest) -> None:
        check_existing(existing, request, self.driver, self.cloud.availability_zones())

    def _check_zone(self, existing: Volume, requirement: TopologyRequirement) -> None:
        check_zone(existing, requirement, self.cloud.availability_zones())

    def _wait_available(
        self, volume: Volume, until: Deadline, fresh: bool = False, copied: bool = False
    ) -> Volume:
        """``volume`` once it is no longer creating. ``fresh``: EC2 has just made it (this call's
        CreateVolume or CopyVolumes answered), so its wait is paced by what earlier waits of its kind
        took and teaches that kind, and EC2 not listing it yet is no error for a while (Describe is
        eventually consistent); a volume of unknown age gets the fixed backoff."""
        if volume.state is VolumeState.CREATING:
            volume_id = volume.volume_id
            pace = None
            unseen_until = self.clock.monotonic() + self.config.token_mismatch_grace if fresh else -math.inf
            if fresh and self.paces is not None:
                pace = self.paces.pace(creation_kind(volume, copied))
            volume = self.waiter.wait(
                until,
                lambda: self._settled(volume_id, unseen_until),
                lambda: f"volume {volume_id} is still creating; the call will find it when retried",
                pace,
            )
        if volume.state in (VolumeState.AVAILABLE, VolumeState.IN_USE):
            return volume
        if volume.state is VolumeState.ERROR:
            self.tokens.rotate(volume.name)
            with contextlib.suppress(NotFound):
                self.cloud.delete_volume(volume.volume_id)
            self.log.error("volume %s entered the error state and was deleted", volume_label(volume))
            raise Internal(
                f"EC2 failed to create volume {volume_label(volume)} (state error); it was deleted"
            )
        raise OperationInProgress(f"volume {volume_label(volume)} is {volume.state.value}; retry later")

    def _settled(self, volume_id: str, unseen_until: float) -> Volume | None:
        try:
            volume = self.cloud.get_volume(volume_id)
        except NotFound:
            if self.clock.monotonic() < unseen_until:
                return None  # just made and not listed yet: wait on
            raise
        return None if volume.state is VolumeState.CREATING else volume

    def _created(
        self, volume: Volume, context: Mapping[str, str], source: ContentSource | None = None
    ) -> CreatedVolume:
        return CreatedVolume(
            volume_id=volume.volume_id,
            capacity_bytes=volume.size_gib * GIB,
            volume_context=dict(context),
            # Read back from EC2, never echoed from the request (aws-ebs-csi-driver #2830).
            accessible_topology=({ZONE_KEY: volume.zone},),
            content_source=source,  # CSI: a volume made from a source echoes it
        )

    def delete_volume(self, volume_id: str, deadline: Deadline | None = None) -> None:
        if not volume_id:
            raise InvalidArgument("volume_id is required")
        # CSI: a volume id the plugin cannot parse does not exist → OK.
        if not is_volume_id(volume_id):
            return
        try:
            self._delete_volume(volume_id)
        finally:
            self.recent.forget(volume_id)  # ValidateVolumeCapabilities must not answer from before

    def _delete_volume(self, volume_id: str) -> None:
        with self.inflight.hold(f"volume:{volume_id}", f"deleting volume {volume_id}"):
            try:
                volume = self.cloud.get_volume(volume_id)
            except NotFound:
                return  # CSI: deleting a volume that does not exist → OK
            deletable = self.config.allow_foreign_volume_delete
            check_deletable(f"volume {volume_id}", volume.tags, TAG_VOLUME_NAME, self.driver, deletable)
            attached = [a.instance_id for a in volume.attachments if a.state != "detached"]
            if attached:
                # CSI: volume in use → FAILED_PRECONDITION.
                raise FailedPrecondition(f"volume {volume_id} is attached to {', '.join(attached)}")
            if volume.state in (VolumeState.DELETING, VolumeState.DELETED):
                return
            try:
                self.cloud.delete_volume(volume_id)
            except NotFound:
                return
            self.log.info("deleted volume %s", volume_label(volume))

    # Publish / unpublish (see attach.py).

    def publish(
        self,
        volume_id: str,
        node_id: str,
        capability: VolumeCapability | None,
        readonly: bool,
        context: Mapping[str, str],
        deadline: Deadline | None,
    ) -> dict[str, str]:
        return self.attacher.publish(volume_id, node_id, capability, readonly, context, deadline)

    def unpublish(self, volume_id: str, node_id: str, deadline: Deadline | None) -> None:
        self.attacher.unpublish(volume_id, node_id, deadline)

    # Queries (see queries.py).

    def validate_capabilities(
        self,
        volume_id: str,
        capabilities: Sequence[VolumeCapability],
        volume_context: Mapping[str, str] | None = None,
        parameters: Mapping[str, str] | None = None,
    ) -> Validation:
        return self.queries.validate(volume_id, capabilities, parameters)

    def get_volume(self, volume_id: str) -> VolumeStatus:
        return self.queries.get(volume_id)

    def list_volumes(self, max_entries: int = 0, starting_token: str = "") -> Page[VolumeStatus]:
        return self.queries.list(max_entries, starting_token)

    def probe(self) -> None:
        """Raises FailedPrecondition when the cloud cannot be used; success is cached for a while."""
        now = self.clock.monotonic()
        with self._lock:
            if self._probe_ok_at is not None and now - self._probe_ok_at < self.config.probe_cache_seconds:
                return
        try:
            self.cloud.check_access()
        except FailedPrecondition:
            raise
        except ZonalError as e:
            # CSI: plugin not healthy / missing dependency → FAILED_PRECONDITION.
            raise FailedPrecondition(f"EC2 is not usable: {e.message}") from e
        with self._lock:
            self._probe_ok_at = now

    def capabilities(self) -> frozenset[ControllerCapability]:
        """What ControllerGetCapabilities advertises: only what this core implements."""
        return CAPABILITIES

    # Snapshots (see snapshots.py).

    def create_snapshot(self, name: str, source_volume_id: str, parameters: Mapping[str, str]) -> Snapshot:
        return self.snapshotter.create(name, source_volume_id, parameters)

    def delete_snapshot(self, snapshot_id: str) -> None:
        self.snapshotter.delete(snapshot_id)

    def get_snapshot(self, snapshot_id: str) -> Snapshot:
        return self.snapshotter.get(snapshot_id)

    def list_snapshots(
        self,
        snapshot_id: str = "",
        source_volume_id: str = "",
        max_entries: int = 0,
        starting_token: str = "",
    ) -> Page[Snapshot]:
        return self.snapshotter.list(snapshot_id, source_volume_id, max_entries, starting_token)

    # Expansion and modification (see modify.py).

    def expand_volume(
        self,
        volume_id: str,
        capacity: CapacityRange | None,
        capability: VolumeCapability | None,
        deadline: Deadline | None,
    ) -> Expanded:
        try:
            return self.modifier.expand(volume_id, capacity, capability, deadline)
        finally:
            self.recent.forget(volume_id)

    def modify_volume(
        self, volume_id: str, mutable_parameters: Mapping[str, str], deadline: Deadline | None
    ) -> None:
        try:
            self.modifier.modify(volume_id, mutable_parameters, deadline)
        finally:
            self.recent.forget(volume_id)
