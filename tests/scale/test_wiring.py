"""The flags reach the adapter: batching on by default, off with --no-ec2-batching; the rate scale."""

from __future__ import annotations

import argparse

import pytest

from provisioner.cli import cloud
from provisioner.config import CloudConfig
from provisioner.embedded.ec2 import SimServer, Simulator
from provisioner.errors import NotFound


def _config(*argv: str) -> CloudConfig:
    parser = argparse.ArgumentParser()
    cloud.add_args(parser)
    return cloud.cloud_config_from_args(parser.parse_args(["--region", "us-east-1", *argv]), environ={})


def test_batching_is_on_by_default_and_can_be_turned_off() -> None:
    assert _config().batching is True
    assert cloud.batch_settings(_config()) is not None
    off = _config("--no-ec2-batching", "--ec2-rate-scale", "10")
    assert (off.batching, off.rate_scale, cloud.batch_settings(off)) == (False, 10.0, None)


def test_the_built_cloud_batches_and_reports_calls_to_metrics() -> None:
    recorded: list[tuple[str, str, bool]] = []

    class Observer:
        def observe_ec2(self, request: str, seconds: float, error: str = "", throttled: bool = False) -> None:
            recorded.append((request, error, throttled))

    with SimServer(Simulator()) as server:
        ec2 = cloud.build_cloud(_config("--ec2-endpoint", server.endpoint_url), metrics=Observer())
        with pytest.raises(NotFound):
            ec2.get_volume("vol-0123456789abcdef0")
    assert recorded == [("DescribeVolumes", "", False)]  # one filtered call, absent id → NotFound
