"""A faithful-enough EC2 for tests, benchmarks and ``--cloud embedded``: moto plus what moto lacks.

moto gets request shapes and error codes right but is lenient exactly where EBS provisioning goes
wrong in production. On top of moto's EC2 this simulator adds:

* ClientToken idempotency for CreateVolume: the same token with the same parameters (the zone
  aside, as EC2 documents) returns the original volume; other parameters answer
  ``IdempotentParameterMismatch``. boto3 fills in a token itself, so its retries are idempotent.
* Zone and device checks: an unknown zone (``InvalidZone.NotFound``), attaching across zones
  (``InvalidVolume.ZoneMismatch``), a device name in use (``InvalidParameterValue``), attaching a
  volume that is attached (``VolumeInUse``) or not ``available`` (``IncorrectState``), modifying a
  volume again too soon (``IncorrectModificationState`` / ``VolumeModificationRateExceeded``).
* Lifecycles on an injected :class:`~provisioner.ports.clock.Clock` (see :class:`Delays`): volumes
  ``creating`` → ``available`` (or ``error``), attachments ``attaching`` → ``attached`` and
  ``detaching`` → ``detached`` (the volume stays ``in-use`` meanwhile), snapshots ``pending`` →
  ``completed``, modifications ``modifying`` → ``optimizing`` → ``completed``. State is computed when
  read; nothing runs in the background, so a ``FakeClock`` drives it exactly.
* EC2's token buckets per action (buckets.py, from zonal's own table of the documented defaults),
  answered ``RequestLimitExceeded`` with HTTP 503; ``scale`` multiplies the refill rates and
  ``burst_scale`` the sizes, so an account's buckets can differ from what zonal starts from.
* Seeded faults (503 throttles, 500 InternalError, volumes ending in ``error``) and per-action latency.
* Counters per action (calls, throttled, errors by code): ``Simulator.counters`` or
  ``GET /_zonal/counters``.
* Hooks (:class:`VolumeHooks`, optionally :class:`SnapshotHooks`; :class:`BackerHooks`) so the
  embedded cloud backs attached volumes with loop devices and carries their data into snapshots
  (taken at CreateSnapshot) and into volumes created from them.
* Actions moto lacks (CopyVolumes…) answer 400 ``InvalidAction`` like EC2, not a retried 500.

Two ways to run it, one request path:

* In process: ``sim = Simulator(SimConfig(...), clock=FakeClock())``; ``sim.client()`` returns a boto3
  client whose requests a botocore ``before-send`` hook hands to the simulator's WSGI application —
  no socket, no thread. ``sim.install(client)`` does the same for a client built elsewhere.
* Over HTTP: ``SimServer(sim).start()`` on 127.0.0.1 (or ``python -m provisioner.embedded.ec2 --port N``),
  so several processes share one account's buckets; point boto3's ``endpoint_url`` at it.

Limits (where this is still not EC2):

* One account and, in practice, one region per simulator; requests signed for another region get
  a separate moto backend and separate buckets but the same configured zones.
* Only CreateVolume honours ClientToken (RunInstances' token is moto's, which ignores it). Tokens
  never expire, and a replay answers with the volume as it is now (``deleted`` once deleted).
* Only the request-rate buckets are modelled, not the resource-rate buckets of RunInstances and
  friends; EC2's buckets are approximations of an undocumented service anyway.
* Lifecycles cover volumes, attachments, snapshots and modifications. Instances are ``running`` at
  once; DescribeInstances drops a block-device mapping as soon as DetachVolume is called (the
  volume itself shows ``detaching``). Creating a volume from a pending snapshot is allowed.
* Concurrent requests run one at a time inside moto (one lock); latency and throttling happen
  outside it. Seeded runs replay exactly only when requests arrive in the same order.
* Zones are a subset of moto's zones for the region (default: its first three).
* moto's global state is shared by every simulator in a process; each simulator uses its own fresh
  account id to stay apart (unless ``account_id`` is set). Nothing is ever freed.
"""

from __future__ import annotations

from provisioner.embedded.ec2.app import IN_PROCESS_ENDPOINT, Simulator
from provisioner.embedded.ec2.config import Delays, Faults, SimConfig
from provisioner.embedded.ec2.counters import ActionCounts, Counters
from provisioner.embedded.ec2.hooks import BackerHooks, SnapshotHooks, VolumeHooks
from provisioner.embedded.ec2.server import SimServer

__all__ = [
    "IN_PROCESS_ENDPOINT",
    "ActionCounts",
    "BackerHooks",
    "Counters",
    "Delays",
    "Faults",
    "SimConfig",
    "SimServer",
    "Simulator",
    "SnapshotHooks",
    "VolumeHooks",
]
