"""``Ec2Cloud``: the :class:`~provisioner.ports.cloud.Cloud` port over a boto3 EC2 client.

One boto3 call per method (plus pagination), each inside :func:`provisioner.aws.errors.translated`
so only domain errors leave. It never waits for a state change and never retries on its own
(the client's retry handler retries throttles and 5xx, see :mod:`provisioner.aws.ratelimit`; the
controller core polls with its injected clock).

The client is injected (like httpx's ``transport=``): tests pass one built under moto, the CLI one
from :func:`provisioner.aws.client.build_ec2_client`. :meth:`Ec2Cloud.describe_volumes` and
:meth:`Ec2Cloud.describe_instances` look many ids up with an id *filter* (unknown ids are simply
absent instead of failing the call). Given :class:`~provisioner.aws.batcher.BatchSettings`, the
:meth:`get_volume`, :meth:`get_instance` and :meth:`find_volume_by_name` of concurrent callers are
answered by shared calls of those (:mod:`provisioner.aws.batcher`).

Pagination (EC2 page sizes against CSI's ``max_entries``) is :mod:`provisioner.aws.pages`.

Ids. A volume, snapshot or instance id that is not of EC2's shape (see :func:`provisioner.model.is_volume_id`)
is answered NotFound (or left out of a listing) here, without a call: EC2 would only answer
``*.Malformed``, and an id holding control characters comes back inside EC2's XML error message,
which then cannot be parsed.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from botocore.exceptions import BotoCoreError, ClientError

from provisioner.aws import convert
from provisioner.aws.batcher import Batcher, BatchSettings
from provisioner.aws.ebs_extras import EbsExtras
from provisioner.aws.errors import (
    error_code,
    is_dry_run_success,
    translate_botocore_error,
    translate_client_error,
    translated,
)
from provisioner.aws.pages import Fetch, page
from provisioner.errors import (
    FailedPrecondition,
    InvalidArgument,
    NotFound,
    Unimplemented,
    ZonalError,
    shown,
)
from provisioner.model import (
    TAG_SNAPSHOT_NAME,
    TAG_VOLUME_NAME,
    Instance,
    Page,
    Snapshot,
    Volume,
    VolumeSpec,
    VolumeState,
    Zone,
    is_instance_id,
    is_snapshot_id,
    is_volume_id,
)
from provisioner.ports.cloud import VolumeModification

if TYPE_CHECKING:
    from mypy_boto3_ec2 import EC2Client
    from mypy_boto3_ec2.type_defs import FilterTypeDef

VOLUME_PAGE = (5, 500)  # DescribeVolumes MaxResults bounds
SNAPSHOT_PAGE = (5, 1000)  # DescribeSnapshots MaxResults bounds
ID_BATCH = 200  # ids per filter value list; a conservative size, EC2 documents no exact limit
_GONE = frozenset({VolumeState.DELETING, VolumeState.DELETED})


class Ec2Cloud(EbsExtras):
    """The EC2 adapter. Thread-safe: boto3 clients are, and the zone cache takes a lock. Fast snapshot
    restores, snapshot locks and volume status come from :class:`EbsExtras`."""

    def __init__(self, client: EC2Client, region: str, batching: BatchSettings | None = None) -> None:
        self._ec2 = client
        self.region = region
        self._zones: tuple[Zone, ...] | None = None
        self._zones_lock = threading.Lock()
        self._copy_unsupported = False  # set once the endpoint has refused CopyVolumes
        self._volumes: Batcher[str, Volume] | None = None
        self._instances: Batcher[str, Instance] | None = None
        self._names: Batcher[str, Volume | None] | None = None
        if batching is not None:
            b = batching
            self._volumes = Batcher.lookups(self.describe_volumes, self._get_volume, _volume_missing, b)
            self._instances = Batcher.lookups(
                self.describe_instances, self._get_instance, _instance_missing, b, instances=True
            )
            if b.batch_names:
                self._names = Batcher.lookups(
                    self.find_volumes_by_names, self._find_volume_by_name, lambda _: None, b
                )

    # Access and zones.

    def check_access(self) -> None:
        """DescribeAvailabilityZones with DryRun: EC2 answers DryRunOperation when we may call it."""
        try:
            self._ec2.describe_availability_zones(DryRun=True)
        except ClientError as e:
            if is_dry_run_success(e):
                return
            # CSI Probe: an unusable dependency is FAILED_PRECONDITION, with the reason.
            raise FailedPrecondition(f"EC2 is not usable: {translate_client_error(e)}") from e
        except BotoCoreError as e:
            reason = translate_botocore_error(e, operation="DescribeAvailabilityZones")
            raise FailedPrecondition(f"EC2 is not reachable: {reason}") from e
        # An endpoint that ignores DryRun and just answers has proven reachability and credentials too.

    def availability_zones(self) -> Sequence[Zone]:
        with self._zones_lock:
            if self._zones is None:
                with translated(f"region {self.region}"):
                    raw = self._ec2.describe_availability_zones()["AvailabilityZones"]
                self._zones = convert.to_zones(raw)
            return self._zones

    # Volumes.

    def create_volume(self, spec: VolumeSpec, zone: str, client_token: str) -> Volume:
        """CreateVolume with the tags written atomically (TagSpecifications) and ``ClientToken``.

        ``CSIVolumeName=spec.name`` is always among the tags, so find_volume_by_name finds it.
        Optional attributes are sent only when set, so EC2's defaults (and account-level encryption
        by default) apply otherwise.
        """
        request = convert.volume_request(spec, client_token, AvailabilityZone=zone)
        if spec.snapshot_id:
            request["SnapshotId"] = spec.snapshot_id
            if spec.initialization_rate:
                request["VolumeInitializationRate"] = spec.initialization_rate
        with translated(f"volume {spec.name!r} in {zone}"):
            raw = self._ec2.create_volume(**request)
        return convert.to_volume(raw)

    def copy_volume(self, source_volume_id: str, spec: VolumeSpec, client_token: str) -> Volume:
        """CopyVolumes (same zone as the source) with the tags written atomically and ``ClientToken``.

        Endpoints without CopyVolumes (older regions' API, moto, the simulator) are remembered, so
        later clones go straight to the caller's snapshot-then-restore fallback."""
        if self._copy_unsupported:
            raise Unimplemented("this EC2 endpoint does not offer CopyVolumes")
        request = convert.volume_request(spec, client_token, SourceVolumeId=source_volume_id)
        try:
            with translated(f"copy of volume {source_volume_id} as {spec.name!r}", _COPY_UNSUPPORTED):
                raw = self._ec2.copy_volumes(**request)["Volumes"]
        except Unimplemented:
            self._copy_unsupported = True
            raise
        except NotImplementedError as e:  # moto run in process raises this for actions it lacks
            self._copy_unsupported = True
            raise Unimplemented(f"this EC2 endpoint does not offer CopyVolumes ({e})") from e
        if not raw:
            raise NotFound(f"CopyVolumes of {source_volume_id} returned no volume")
        return convert.to_volume(raw[0])

    def get_volume(self, volume_id: str) -> Volume:
        _check_volume_id(volume_id)
        if self._volumes is not None:
            return self._volumes.get(volume_id)
        return self._get_volume(volume_id)

    def _get_volume(self, volume_id: str) -> Volume:
        with translated(f"volume {volume_id}"):
            raw = self._ec2.describe_volumes(VolumeIds=[volume_id])["Volumes"]
        for item in raw:
            if item["VolumeId"] == volume_id:
                return convert.to_volume(item)
        raise NotFound(f"volume {volume_id} does not exist")

    def describe_volumes(self, volume_ids: Iterable[str]) -> dict[str, Volume]:
        """The volumes among ``volume_ids`` that exist; unknown or malformed ids are just absent."""
        found: dict[str, Volume] = {}
        wanted = [v for v in dict.fromkeys(volume_ids) if is_volume_id(v)]
        for chunk in _chunks(wanted, ID_BATCH):
            filters: list[FilterTypeDef] = [{"Name": "volume-id", "Values": chunk}]
            for raw in self._all_pages(self._volume_fetch(filters), VOLUME_PAGE[1]):
                volume = convert.to_volume(raw)
                found[volume.volume_id] = volume
        return found

    def find_volume_by_name(self, name: str) -> Volume | None:
        if self._names is not None:
            return self._names.get(name)
        return self._find_volume_by_name(name)

    def find_volumes_by_names(self, names: Iterable[str]) -> dict[str, Volume]:
        """For each of ``names`` that a live volume carries (exactly) as its name tag, the oldest such
        volume; one tag-filtered DescribeVolumes per ID_BATCH names."""
        candidates: dict[str, list[convert.Raw]] = {}
        wanted = list(dict.fromkeys(names))
        for chunk in _chunks(wanted, ID_BATCH):
            filters: list[FilterTypeDef] = [{"Name": f"tag:{TAG_VOLUME_NAME}", "Values": chunk}]
            for raw in self._all_pages(self._volume_fetch(filters), VOLUME_PAGE[1]):
                tag = next(
                    (t.get("Value", "") for t in raw.get("Tags", []) if t.get("Key") == TAG_VOLUME_NAME), ""
                )
                if raw.get("State") not in {s.value for s in _GONE}:
                    candidates.setdefault(tag, []).append(raw)
        found: dict[str, Volume] = {}
        for name in wanted:  # filter values are patterns (* and ?): keep exact matches only
            alive = candidates.get(name)
            if alive:
                alive.sort(key=lambda v: (convert.epoch(v.get("CreateTime")), v["VolumeId"]))  # oldest first
                found[name] = convert.to_volume(alive[0])
        return found

    def _find_volume_by_name(self, name: str) -> Volume | None:
        filters = convert.tag_filters({TAG_VOLUME_NAME: name})
        with translated(f"volume named {name!r}"):
            raw = self._ec2.describe_volumes(Filters=filters)["Volumes"]
        alive = [v for v in raw if v.get("State") not in {s.value for s in _GONE}]
        if not alive:
            return None
        alive.sort(key=lambda v: (convert.epoch(v.get("CreateTime")), v["VolumeId"]))  # oldest first
        return convert.to_volume(alive[0])

    def delete_volume(self, volume_id: str) -> None:
        _check_volume_id(volume_id)
        with translated(f"volume {volume_id}"):
            self._ec2.delete_volume(VolumeId=volume_id)

    def list_volumes(self, tag_filters: Mapping[str, str], max_results: int, next_token: str) -> Page[Volume]:
        fetch = self._volume_fetch(convert.tag_filters(tag_filters))
        return page(fetch, max_results, next_token, VOLUME_PAGE, convert.to_volume)

    # Instances and attachments.

    def get_instance(self, instance_id: str) -> Instance:
        _check_instance_id(instance_id)
        if self._instances is not None:
            return self._instances.get(instance_id)
        return self._get_instance(instance_id)

    def _get_instance(self, instance_id: str) -> Instance:
        with translated(f"instance {instance_id}"):
            reservations = self._ec2.describe_instances(InstanceIds=[instance_id])["Reservations"]
        for reservation in reservations:
            for raw in reservation.get("Instances", []):
                if raw.get("InstanceId") == instance_id:
                    return convert.to_instance(raw)
        raise NotFound(f"instance {instance_id} does not exist")

    def describe_instances(self, instance_ids: Iterable[str]) -> dict[str, Instance]:
        """The instances among ``instance_ids`` that exist; unknown or malformed ids are just absent."""
        found: dict[str, Instance] = {}
        wanted = [i for i in dict.fromkeys(instance_ids) if is_instance_id(i)]
        for chunk in _chunks(wanted, ID_BATCH):
            with translated("instances"):
                pages = self._ec2.get_paginator("describe_instances").paginate(
                    Filters=[{"Name": "instance-id", "Values": chunk}]
                )
                for page in pages:
                    for reservation in page["Reservations"]:
                        for raw in reservation.get("Instances", []):
                            instance = convert.to_instance(raw)
                            found[instance.instance_id] = instance
        return found

    def attach_volume(self, volume_id: str, instance_id: str, device: str) -> None:
        _check_volume_id(volume_id)
        _check_instance_id(instance_id)
        with translated(f"volume {volume_id} to instance {instance_id}", operation="AttachVolume"):
            try:
                self._ec2.attach_volume(VolumeId=volume_id, InstanceId=instance_id, Device=device)
            except ClientError as e:
                # EC2 reports a taken device name as InvalidParameterValue "... is already in use".
                if error_code(e) == "InvalidParameterValue" and "already in use" in str(e):
                    raise translate_client_error(e, f"device {device} on {instance_id}", _DEVICE_TAKEN) from e
                raise

    def detach_volume(self, volume_id: str, instance_id: str) -> None:
        # Detaching a volume that is not attached: EC2 says IncorrectState ("... is in the 'available'
        # state"); the port promises NotFound so ControllerUnpublish can treat it as done.
        _check_volume_id(volume_id)
        _check_instance_id(instance_id)
        with translated(f"volume {volume_id} from instance {instance_id}", _NOT_ATTACHED, "DetachVolume"):
            self._ec2.detach_volume(VolumeId=volume_id, InstanceId=instance_id)

    # Snapshots.

    def create_snapshot(
        self, volume_id: str, tags: Mapping[str, str], description: str, outpost_arn: str = ""
    ) -> Snapshot:
        _check_volume_id(volume_id)
        request: dict[str, Any] = {"VolumeId": volume_id, "Description": description}
        if outpost_arn:
            request["OutpostArn"] = outpost_arn
        if tags:
            request["TagSpecifications"] = convert.tag_specifications("snapshot", tags)
        with translated(f"snapshot of volume {volume_id}"):
            raw = self._ec2.create_snapshot(**request)
        return convert.to_snapshot(raw)

    def get_snapshot(self, snapshot_id: str) -> Snapshot:
        _check_snapshot_id(snapshot_id)
        with translated(f"snapshot {snapshot_id}"):
            raw = self._ec2.describe_snapshots(SnapshotIds=[snapshot_id])["Snapshots"]
        for item in raw:
            if item["SnapshotId"] == snapshot_id:
                return convert.to_snapshot(item)
        raise NotFound(f"snapshot {snapshot_id} does not exist")

    def find_snapshot_by_name(self, name: str) -> Snapshot | None:
        fetch = self._snapshot_fetch(convert.tag_filters({TAG_SNAPSHOT_NAME: name}))
        raw = sorted(
            self._all_pages(fetch, SNAPSHOT_PAGE[1]),
            key=lambda s: (convert.epoch(s.get("StartTime")), s["SnapshotId"]),
        )
        return convert.to_snapshot(raw[0]) if raw else None

    def delete_snapshot(self, snapshot_id: str) -> None:
        _check_snapshot_id(snapshot_id)
        with translated(f"snapshot {snapshot_id}"):
            self._ec2.delete_snapshot(SnapshotId=snapshot_id)

    def list_snapshots(
        self,
        tag_filters: Mapping[str, str],
        source_volume_id: str,
        max_results: int,
        next_token: str,
    ) -> Page[Snapshot]:
        """Own snapshots only: ``OwnerIds=["self"]`` and the tag filters (public snapshots never match)."""
        if source_volume_id and not is_volume_id(source_volume_id):
            return Page(())  # no snapshot can be of a volume that cannot exist
        filters = convert.tag_filters(tag_filters)
        if source_volume_id:
            filters.append({"Name": "volume-id", "Values": [source_volume_id]})
        fetch = self._snapshot_fetch(filters)
        return page(fetch, max_results, next_token, SNAPSHOT_PAGE, convert.to_snapshot)

    # Modification and tags.

    def modify_volume(
        self,
        volume_id: str,
        size_gib: int | None = None,
        volume_type: str | None = None,
        iops: int | None = None,
        throughput: int | None = None,
    ) -> VolumeModification:
        _check_volume_id(volume_id)
        request: dict[str, Any] = {"VolumeId": volume_id}
        for key, value in (("Size", size_gib), ("VolumeType", volume_type), ("Iops", iops)):
            if value is not None:
                request[key] = value
        if throughput is not None:
            request["Throughput"] = throughput
        if len(request) == 1:
            raise InvalidArgument(f"ModifyVolume of {volume_id}: nothing to change")
        with translated(f"volume {volume_id}"):
            raw = self._ec2.modify_volume(**request)["VolumeModification"]
        return convert.to_modification(raw)

    def get_volume_modification(self, volume_id: str) -> VolumeModification | None:
        _check_volume_id(volume_id)
        with translated(f"volume {volume_id}"):
            try:
                answer = self._ec2.describe_volumes_modifications(VolumeIds=[volume_id])
            except ClientError as e:
                # EC2 answers InvalidVolumeModification.NotFound for a volume that was never modified.
                if error_code(e) == "InvalidVolumeModification.NotFound":
                    return None
                raise
        latest = sorted(
            answer.get("VolumesModifications", []), key=lambda m: convert.epoch(m.get("StartTime"))
        )
        return convert.to_modification(latest[-1]) if latest else None

    def create_tags(self, resource_id: str, tags: Mapping[str, str]) -> None:
        if not tags:
            return
        _check_resource_id(resource_id)
        with translated(resource_id):
            self._ec2.create_tags(Resources=[resource_id], Tags=convert.tags_to_ec2(tags))

    def delete_tags(self, resource_id: str, keys: Sequence[str]) -> None:
        if not keys:
            return
        _check_resource_id(resource_id)
        with translated(resource_id):
            self._ec2.delete_tags(Resources=[resource_id], Tags=[{"Key": k} for k in sorted(set(keys))])

    # Helpers.

    def _volume_fetch(self, filters: list[FilterTypeDef]) -> Fetch:
        def fetch(max_results: int, token: str) -> tuple[Sequence[convert.Raw], str]:
            request: dict[str, Any] = {"Filters": filters, "MaxResults": max_results}
            if token:
                request["NextToken"] = token
            with translated("volumes"):
                answer = self._ec2.describe_volumes(**request)
            return answer.get("Volumes", []), answer.get("NextToken", "")

        return fetch

    def _snapshot_fetch(self, filters: list[FilterTypeDef]) -> Fetch:
        def fetch(max_results: int, token: str) -> tuple[Sequence[convert.Raw], str]:
            # OwnerIds=self plus our tag filters: public snapshots must never leak into our listings.
            request: dict[str, Any] = {"OwnerIds": ["self"], "Filters": filters, "MaxResults": max_results}
            if token:
                request["NextToken"] = token
            with translated("snapshots"):
                answer = self._ec2.describe_snapshots(**request)
            return answer.get("Snapshots", []), answer.get("NextToken", "")

        return fetch

    @staticmethod
    def _all_pages(fetch: Fetch, page_size: int) -> list[convert.Raw]:
        items: list[convert.Raw] = []
        token = ""
        while True:
            raw, token = fetch(page_size, token)
            items.extend(raw)
            if not token:
                return items


def _check_volume_id(volume_id: str) -> None:
    if not is_volume_id(volume_id):
        raise NotFound(f"volume {shown(volume_id)} does not exist (not an EBS volume id)")


def _check_snapshot_id(snapshot_id: str) -> None:
    if not is_snapshot_id(snapshot_id):
        raise NotFound(f"snapshot {shown(snapshot_id)} does not exist (not an EBS snapshot id)")


def _check_instance_id(instance_id: str) -> None:
    if not is_instance_id(instance_id):
        raise NotFound(f"instance {shown(instance_id)} does not exist (not an EC2 instance id)")


def _check_resource_id(resource_id: str) -> None:
    if not (is_volume_id(resource_id) or is_snapshot_id(resource_id)):
        raise NotFound(f"{shown(resource_id)} is neither an EBS volume id nor a snapshot id")


def _volume_missing(volume_id: str) -> Volume:
    raise NotFound(f"volume {volume_id} does not exist")


def _instance_missing(instance_id: str) -> Instance:
    raise NotFound(f"instance {instance_id} does not exist")


_DEVICE_TAKEN: Mapping[str, type[ZonalError]] = {"InvalidParameterValue": FailedPrecondition}
_NOT_ATTACHED: Mapping[str, type[ZonalError]] = {"IncorrectState": NotFound}
# How endpoints say they lack an action (EC2's own code, and what emulators answer).
_COPY_UNSUPPORTED: Mapping[str, type[ZonalError]] = {
    "InvalidAction": Unimplemented,
    "UnsupportedOperation": Unimplemented,
    "NotImplemented": Unimplemented,
    "UnknownOperationException": Unimplemented,
}


def _chunks(items: list[str], size: int) -> Iterable[list[str]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]
