"""The simulator over HTTP on 127.0.0.1: real boto3 clients, shared buckets, the control paths."""

from __future__ import annotations

import json
import urllib.request
from collections.abc import Iterator
from typing import TYPE_CHECKING

import boto3.session
import pytest
from botocore.exceptions import ClientError

from provisioner.embedded.ec2 import SimConfig, SimServer, Simulator
from provisioner.embedded.ec2.__main__ import build_parser, config_from
from tests.fakes.clock import FakeClock
from tests.sim.conftest import NO_RETRY, ZONE_A, ZONE_B, code_of, http_status_of

if TYPE_CHECKING:
    from mypy_boto3_ec2 import EC2Client


@pytest.fixture
def server(clock: FakeClock) -> Iterator[SimServer]:
    with SimServer(Simulator(SimConfig(), clock=clock)) as running:
        yield running


def _client(server: SimServer) -> EC2Client:
    session = boto3.session.Session(region_name="us-east-1")
    return session.client("ec2", endpoint_url=server.endpoint_url, config=NO_RETRY)


def _control(server: SimServer, method: str, path: str) -> object:
    request = urllib.request.Request(server.endpoint_url + path, method=method)
    with urllib.request.urlopen(request, timeout=10) as answer:
        return json.loads(answer.read())


def test_two_clients_share_one_account(server: SimServer) -> None:
    a, b = _client(server), _client(server)

    volume_id = a.create_volume(AvailabilityZone=ZONE_A, Size=1)["VolumeId"]

    assert [v["VolumeId"] for v in b.describe_volumes(VolumeIds=[volume_id])["Volumes"]] == [volume_id]
    assert server.endpoint_url.startswith("http://127.0.0.1:")


def test_two_clients_share_the_buckets(server: SimServer) -> None:
    a, b = _client(server), _client(server)
    for _ in range(25):
        a.describe_volumes()
        b.describe_volumes()

    with pytest.raises(ClientError) as raised:
        b.describe_volumes()

    assert (code_of(raised.value), http_status_of(raised.value)) == ("RequestLimitExceeded", 503)
    counters = _control(server, "GET", "/_zonal/counters")
    assert counters == {
        "DescribeVolumes": {"calls": 51, "throttled": 1, "errors": 0, "codes": {"RequestLimitExceeded": 1}}
    }


def test_control_paths(server: SimServer) -> None:
    created = _control(server, "POST", f"/_zonal/instances?zone={ZONE_B}")
    assert isinstance(created, dict)
    instance = _client(server).describe_instances(InstanceIds=[created["instance_id"]])
    assert instance["Reservations"][0]["Instances"][0]["Placement"]["AvailabilityZone"] == ZONE_B

    config = _control(server, "GET", "/_zonal/config")
    assert isinstance(config, dict)
    assert config["zones"] == ["us-east-1a", "us-east-1b", "us-east-1c"]
    assert _control(server, "DELETE", "/_zonal/counters") == {}
    assert _control(server, "GET", "/_zonal/counters") == {}


def test_the_volumes_path_says_when_each_volume_leaves_creating(server: SimServer, clock: FakeClock) -> None:
    ec2 = _client(server)
    first = ec2.create_volume(AvailabilityZone=ZONE_A, Size=1)["VolumeId"]
    clock.advance(0.25)
    second = ec2.create_volume(AvailabilityZone=ZONE_A, Size=1)["VolumeId"]

    ready = _control(server, "GET", "/_zonal/volumes")

    delay = SimConfig().delays.volume_create
    assert ready == {
        first: pytest.approx(clock.time() - 0.25 + delay),
        second: pytest.approx(clock.time() + delay),
    }


def test_unknown_control_path_is_404(server: SimServer) -> None:
    with pytest.raises(urllib.error.HTTPError) as raised:
        _control(server, "GET", "/_zonal/nothing")

    assert raised.value.code == 404
    raised.value.close()


def test_stop_is_idempotent(clock: FakeClock) -> None:
    server = SimServer(Simulator(SimConfig(), clock=clock)).start()
    port = server.port

    server.stop()
    server.stop()

    assert port > 0
    with pytest.raises(RuntimeError):
        _ = server.port


def test_command_line_builds_the_config() -> None:
    args = build_parser().parse_args(
        [
            "--scale",
            "10",
            "--zones",
            "us-east-1a,us-east-1b",
            "--instant",
            "--throttle-rate",
            "0.1",
            "--seed",
            "5",
        ]
    )

    config = config_from(args)

    assert (config.scale, config.zones, config.seed) == (10.0, ("us-east-1a", "us-east-1b"), 5)
    assert config.delays.volume_create == 0.0
    assert config.faults.throttle_rate == 0.1
    assert config.throttling
