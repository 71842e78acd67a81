"""The EC2 client factory: region, endpoint, retries, timeouts and user agent come from CloudConfig."""

from __future__ import annotations

from typing import Any

import pytest

from provisioner import __version__
from provisioner.aws.client import build_ec2_client
from provisioner.config import CloudConfig


def test_client_follows_the_config() -> None:
    config = CloudConfig(
        region="eu-west-1",
        endpoint_url="http://127.0.0.1:4566",
        retry_mode="standard",
        max_attempts=3,
        connect_timeout=2.5,
        read_timeout=12.0,
    )
    client = build_ec2_client(config)
    settings: Any = client.meta.config  # botocore sets these attributes dynamically
    assert client.meta.region_name == "eu-west-1"
    assert client.meta.endpoint_url == "http://127.0.0.1:4566"
    assert settings.retries == {"mode": "standard", "total_max_attempts": 3}
    assert (settings.connect_timeout, settings.read_timeout) == (2.5, 12.0)
    assert settings.user_agent_extra == f"zonal/{__version__}"
    assert settings.max_pool_connections >= 100  # the sidecars' concurrency


def test_default_endpoint_is_the_regional_one() -> None:
    client = build_ec2_client(CloudConfig(region="ap-south-1"))
    settings: Any = client.meta.config
    assert client.meta.endpoint_url == "https://ec2.ap-south-1.amazonaws.com"
    # Retry mode adaptive is zonal's per-action limiter installed over botocore's standard mode.
    assert settings.retries == {"mode": "standard", "total_max_attempts": 5}


def test_boto3_honours_the_ec2_endpoint_variable_by_itself(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AWS_ENDPOINT_URL_EC2", "http://127.0.0.1:5999")
    assert build_ec2_client(CloudConfig(region="us-east-1")).meta.endpoint_url == "http://127.0.0.1:5999"
    explicit = CloudConfig(region="us-east-1", endpoint_url="http://127.0.0.1:6000")
    assert build_ec2_client(explicit).meta.endpoint_url == "http://127.0.0.1:6000"


@pytest.mark.parametrize(
    ("config", "message"),
    [
        (CloudConfig(region=""), "no AWS region"),
        (CloudConfig(region="us-east-1", retry_mode="legacy"), "retry mode"),
        (CloudConfig(region="us-east-1", max_attempts=0), "max attempts"),
    ],
)
def test_bad_config_is_refused(config: CloudConfig, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        build_ec2_client(config)
