"""Cloud flags and the builder that turns them into a ready :class:`~provisioner.aws.ec2.Ec2Cloud`.

``add_args`` (alias ``add_cloud_args``) adds ``--cloud --region --ec2-endpoint --aws-retry-mode
--aws-max-attempts --[no-]ec2-batching --ec2-batch-window --ec2-rate-scale``;
``cloud_config_from_args`` resolves the region (``--region``, then ``AWS_REGION`` /
``AWS_DEFAULT_REGION``, then instance metadata) into a :class:`~provisioner.config.CloudConfig`;
``build_cloud`` builds the EC2 adapter from it (lookups batched unless ``--no-ec2-batching``). The
endpoint variable ``AWS_ENDPOINT_URL_EC2`` is not read here: boto3 honours it by itself.
The ``embedded`` kind (the in-process simulator) is wired by its own module.
"""

from __future__ import annotations

import argparse
import logging
import os
from collections.abc import Callable, Mapping

from provisioner.aws.batcher import BatchSettings
from provisioner.aws.callmetrics import Ec2Observer
from provisioner.aws.client import RETRY_MODES, build_ec2_client, credentials_source
from provisioner.aws.ec2 import Ec2Cloud
from provisioner.aws.imds import ImdsClient
from provisioner.cli import CliError
from provisioner.config import CloudConfig
from provisioner.errors import ZonalError

log = logging.getLogger("zonal.cloud")

CLOUD_KINDS = ("aws", "embedded")
_DEFAULTS = CloudConfig()


def _attempts(value: str) -> int:
    n = int(value)
    if n < 1:
        raise argparse.ArgumentTypeError("must be at least 1")
    return n


def _positive(value: str) -> float:
    x = float(value)
    if x <= 0:
        raise argparse.ArgumentTypeError("must be positive")
    return x


def _seconds(value: str) -> float:
    x = float(value)
    if x < 0:
        raise argparse.ArgumentTypeError("must not be negative")
    return x


def add_args(parser: argparse.ArgumentParser) -> None:
    g = parser.add_argument_group("cloud")
    g.add_argument(
        "--cloud",
        choices=CLOUD_KINDS,
        default=_DEFAULTS.kind,
        help="aws: the real EC2 API; embedded: an in-process simulated EC2 (default aws)",
    )
    g.add_argument(
        "--region", default="", help="AWS region (default: AWS_REGION, then the instance metadata)"
    )
    g.add_argument(
        "--ec2-endpoint",
        default="",
        help="EC2 endpoint URL (default: boto3's own AWS_ENDPOINT_URL_EC2, else the regional endpoint)",
    )
    g.add_argument(
        "--aws-retry-mode",
        choices=RETRY_MODES,
        default=_DEFAULTS.retry_mode,
        help="adaptive: a client-side rate limit per EC2 action that finds the account's real rate, retries "
        "bounded by the RPC deadline; standard: botocore's standard retries "
        f"(default {_DEFAULTS.retry_mode})",
    )
    g.add_argument(
        "--aws-max-attempts",
        type=_attempts,
        default=_DEFAULTS.max_attempts,
        help=f"attempts per EC2 call, the first included (default {_DEFAULTS.max_attempts})",
    )
    g.add_argument(
        "--ec2-batching",
        action=argparse.BooleanOptionalAction,
        default=_DEFAULTS.batching,
        help="concurrent DescribeVolumes/DescribeInstances lookups share one call (default on)",
    )
    g.add_argument(
        "--ec2-batch-window",
        type=_seconds,
        default=_DEFAULTS.batch_window,
        help=f"seconds a lookup waits for others to join its batch (default {_DEFAULTS.batch_window})",
    )
    g.add_argument(
        "--ec2-rate-scale",
        type=_positive,
        default=_DEFAULTS.rate_scale,
        help="where the client-side limiter starts: EC2's documented buckets (size and rate) times this; "
        "it then finds the account's real rate by itself, above or below (default 1)",
    )


add_cloud_args = add_args


def region_from_metadata(timeout: float = 1.0) -> str:
    """The region the instance metadata reports; "" off EC2 (after about ``timeout`` seconds)."""
    try:
        return ImdsClient(timeout=timeout).get("placement/region")
    except ZonalError as e:
        log.info("no region from instance metadata: %s", e)
        return ""


def resolve_region(
    flag: str,
    environ: Mapping[str, str],
    metadata: Callable[[], str] = region_from_metadata,
) -> str:
    """``--region``, then ``AWS_REGION`` / ``AWS_DEFAULT_REGION``, then instance metadata; "" if none."""
    return flag or environ.get("AWS_REGION") or environ.get("AWS_DEFAULT_REGION") or metadata()


def no_metadata() -> str:
    """No instance metadata service: the region comes from the flag or the environment only."""
    return ""


def cloud_config_from_args(
    args: argparse.Namespace,
    environ: Mapping[str, str] | None = None,
    metadata: Callable[[], str] = region_from_metadata,
) -> CloudConfig:
    """The :class:`CloudConfig` for the parsed flags. Refuses to start without a region (aws kind)."""
    env = os.environ if environ is None else environ
    if args.cloud == "embedded":
        metadata = no_metadata  # the embedded cloud never asks a real instance metadata service
    region = resolve_region(args.region, env, metadata)
    if not region:
        if args.cloud == "aws":
            raise CliError(
                "no AWS region: pass --region, set AWS_REGION, or run on EC2 (instance metadata); in a "
                "cluster, set aws-region in the zonal-controller-config ConfigMap (deploy/base)"
            )
        region = "us-east-1"  # the embedded cloud needs some region; its zones are us-east-1a..f
    return CloudConfig(
        kind=args.cloud,
        region=region,
        endpoint_url=args.ec2_endpoint,
        retry_mode=args.aws_retry_mode,
        max_attempts=args.aws_max_attempts,
        batching=args.ec2_batching,
        batch_window=args.ec2_batch_window,
        rate_scale=args.ec2_rate_scale,
    )


def batch_settings(config: CloudConfig) -> BatchSettings | None:
    """How the adapter batches lookups, or None with ``--no-ec2-batching``."""
    return BatchSettings(window=config.batch_window) if config.batching else None


NO_CREDENTIALS = (
    "no AWS credentials: none in the environment, ~/.aws, a web identity token (IRSA) or the instance "
    "profile; on EKS give the ServiceAccount an IAM role (deploy/components/irsa), elsewhere set "
    "AWS_PROFILE or AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY"
)


def require_credentials(find: Callable[[], str | None] = credentials_source) -> str:
    """How the credentials will be found; CliError (cause and fix) when there are none, so a controller
    without them refuses to start instead of failing every CreateVolume with PERMISSION_DENIED."""
    source = find()
    if source is None:
        raise CliError(NO_CREDENTIALS)
    log.info("AWS credentials from %s", source)
    return source


def build_cloud(config: CloudConfig, metrics: Ec2Observer | None = None) -> Ec2Cloud:
    """The EC2 adapter for ``config`` (kind ``aws``); every EC2 call is reported to ``metrics``."""
    if config.kind != "aws":
        raise CliError(f"--cloud {config.kind} is not built by provisioner.cli.cloud.build_cloud")
    try:
        client = build_ec2_client(config, metrics=metrics)
    except ValueError as e:
        raise CliError(str(e)) from e
    log.info("EC2 in %s via %s", config.region, client.meta.endpoint_url)
    return Ec2Cloud(client, config.region, batch_settings(config))
