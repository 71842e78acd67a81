"""The cloud flags: region resolution order, CloudConfig from flags, and the EC2 adapter builder."""

from __future__ import annotations

import argparse

import pytest

from provisioner.aws.ec2 import Ec2Cloud
from provisioner.cli import CliError
from provisioner.cli.cloud import add_args, build_cloud, cloud_config_from_args, resolve_region
from provisioner.config import CloudConfig


def parse(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    add_args(parser)
    return parser.parse_args(argv)


def no_metadata() -> str:
    return ""


def test_region_order_flag_then_environment_then_metadata() -> None:
    env = {"AWS_REGION": "eu-west-1", "AWS_DEFAULT_REGION": "eu-west-2"}
    assert resolve_region("ap-south-1", env, no_metadata) == "ap-south-1"
    assert resolve_region("", env, no_metadata) == "eu-west-1"
    assert resolve_region("", {"AWS_DEFAULT_REGION": "eu-west-2"}, no_metadata) == "eu-west-2"
    assert resolve_region("", {}, lambda: "us-west-2") == "us-west-2"
    assert resolve_region("", {}, no_metadata) == ""


def test_flags_become_a_cloud_config() -> None:
    args = parse(
        "--region", "us-east-2", "--ec2-endpoint", "http://127.0.0.1:5000",
        "--aws-retry-mode", "standard", "--aws-max-attempts", "9",
    )  # fmt: skip
    config = cloud_config_from_args(args, {}, no_metadata)
    assert config == CloudConfig(
        kind="aws",
        region="us-east-2",
        endpoint_url="http://127.0.0.1:5000",
        retry_mode="standard",
        max_attempts=9,
    )


def test_defaults_match_cloud_config_defaults() -> None:
    config = cloud_config_from_args(parse(), {"AWS_REGION": "us-east-1"}, no_metadata)
    assert config == CloudConfig(region="us-east-1")


def test_aws_without_a_region_refuses_to_start() -> None:
    with pytest.raises(CliError, match="no AWS region"):
        cloud_config_from_args(parse(), {}, no_metadata)


def test_embedded_cloud_needs_no_region() -> None:
    assert cloud_config_from_args(parse("--cloud", "embedded"), {}, no_metadata).region == "us-east-1"


@pytest.mark.parametrize(
    "argv", [["--aws-max-attempts", "0"], ["--aws-retry-mode", "legacy"], ["--cloud", "gcp"]]
)
def test_bad_flags_are_refused(argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        parse(*argv)
    assert "error" in capsys.readouterr().err


def test_build_cloud_makes_an_ec2_adapter_without_calling_ec2() -> None:
    cloud = build_cloud(CloudConfig(region="eu-central-1", endpoint_url="http://127.0.0.1:1"))
    assert isinstance(cloud, Ec2Cloud)
    assert cloud.region == "eu-central-1"


def test_build_cloud_refuses_other_kinds() -> None:
    with pytest.raises(CliError, match="embedded"):
        build_cloud(CloudConfig(kind="embedded", region="us-east-1"))
