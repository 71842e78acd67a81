"""The flags reach the adapter: batching on by default, off with --no-ec2-batching; the rate scale;
the metrics see every call and the limiter's rate."""

from __future__ import annotations

import argparse

import pytest

from provisioner.cli import cloud
from provisioner.config import CloudConfig
from provisioner.embedded.ec2 import SimServer, Simulator
from provisioner.errors import NotFound
from provisioner.metrics import Metrics


def _config(*argv: str) -> CloudConfig:
    parser = argparse.ArgumentParser()
    cloud.add_args(parser)
    return cloud.cloud_config_from_args(parser.parse_args(["--region", "us-east-1", *argv]), environ={})


def test_batching_is_on_by_default_and_can_be_turned_off() -> None:
    assert _config().batching is True
    assert cloud.batch_settings(_config()) is not None
    off = _config("--no-ec2-batching", "--ec2-rate-scale", "10")
    assert (off.batching, off.rate_scale, cloud.batch_settings(off)) == (False, 10.0, None)


def test_the_built_cloud_batches_and_reports_calls_and_the_limiter_rate_to_metrics() -> None:
    metrics = Metrics()
    with SimServer(Simulator()) as server:
        ec2 = cloud.build_cloud(_config("--ec2-endpoint", server.endpoint_url), metrics=metrics)
        with pytest.raises(NotFound):
            ec2.get_volume("vol-0123456789abcdef0")
        with pytest.raises(NotFound):
            ec2.delete_volume("vol-0123456789abcdef0")
    text = metrics.exposition().decode()
    # One filtered call, absent id → NotFound.
    assert 'zonal_ec2_api_request_duration_seconds_count{request="DescribeVolumes"} 1.0' in text
    assert 'zonal_ec2_limiter_rate{request="DeleteVolume"} 5.0' in text  # the documented start
    assert 'zonal_ec2_limiter_rate{request="DescribeVolumes"}' not in text  # reads are not limited
