"""The one place a boto3 EC2 client is built, from :class:`~provisioner.config.CloudConfig`.

Region, endpoint, retries and timeouts all come from the config the CLI filled in (``--region``,
``AWS_REGION``, instance metadata — resolved there, not here). This module does not read
``os.environ``: when ``endpoint_url`` is empty, boto3 itself honours ``AWS_ENDPOINT_URL_EC2`` /
``AWS_ENDPOINT_URL``, and credentials come from boto3's usual chain. It must not make any call.

Retry modes. ``standard`` is botocore's standard mode as is. ``adaptive`` (the default) is zonal's own:
a rate limiter per EC2 action that finds the account's real rate from EC2's answers, starting from the
documented buckets × ``rate_scale``, and retries bounded by the RPC deadline
(:mod:`provisioner.aws.ratelimit`), installed over botocore's standard mode — botocore's own adaptive
mode keeps one rate for the whole client, so throttled CreateVolumes would slow AttachVolume.
With a ``metrics`` observer every API call and the limiter's rate per action are reported
(:mod:`provisioner.aws.callmetrics`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import boto3.session
from botocore.config import Config

from provisioner import __version__
from provisioner.aws.adaptive import LimiterSettings
from provisioner.aws.callmetrics import Ec2Observer, install_metrics
from provisioner.aws.ratelimit import RateLimiter, RetryPolicy, install
from provisioner.config import CloudConfig

if TYPE_CHECKING:
    from mypy_boto3_ec2 import EC2Client

RETRY_MODES = ("standard", "adaptive")

# The sidecars send up to 100 concurrent calls and each may hold an HTTP connection while it polls;
# botocore's default pool of 10 would queue them behind each other inside urllib3.
MAX_POOL_CONNECTIONS = 128

USER_AGENT_EXTRA = f"zonal/{__version__}"


def client_config(config: CloudConfig) -> Config:
    """The botocore ``Config`` for ``config``: retries, timeouts, pool size and user agent."""
    if config.retry_mode not in RETRY_MODES:
        raise ValueError(f"retry mode {config.retry_mode!r} is not one of {', '.join(RETRY_MODES)}")
    if config.max_attempts < 1:
        raise ValueError(f"max attempts must be at least 1, not {config.max_attempts}")
    return Config(
        region_name=config.region,
        # total_max_attempts counts the first try (like AWS_MAX_ATTEMPTS); botocore's max_attempts would not.
        # "adaptive" is zonal's limiter over botocore's standard mode (see the module docstring).
        retries={"mode": "standard", "total_max_attempts": config.max_attempts},
        connect_timeout=config.connect_timeout,
        read_timeout=config.read_timeout,
        max_pool_connections=MAX_POOL_CONNECTIONS,
        user_agent_extra=USER_AGENT_EXTRA,
    )


def build_ec2_client(
    config: CloudConfig,
    session: boto3.session.Session | None = None,
    metrics: Ec2Observer | None = None,
) -> EC2Client:
    """A thread-safe EC2 client for ``config.region`` (which must already be resolved).

    ``session`` is for tests that build many clients (it caches the large EC2 service model);
    by default each client gets a session of its own, because boto3's default session is shared
    module state and not thread-safe.
    """
    if not config.region:
        raise ValueError("no AWS region: pass --region, set AWS_REGION, or run on EC2 (instance metadata)")
    session = session or boto3.session.Session(region_name=config.region)
    client = session.client(
        "ec2",
        region_name=config.region,
        endpoint_url=config.endpoint_url or None,
        config=client_config(config),
    )
    instrument(client, config, metrics)
    return client


def credentials_source(session: boto3.session.Session | None = None) -> str | None:
    """Where botocore's credential chain finds credentials (``env``, ``shared-credentials-file``,
    ``assume-role-with-web-identity``, ``iam-role``, …), or None when it finds none. It makes no EC2
    call; the instance-profile provider may ask the instance metadata service (1 s timeout)."""
    session = session or boto3.session.Session()
    credentials = session.get_credentials()
    return None if credentials is None else str(getattr(credentials, "method", "") or "unknown")


def instrument(client: EC2Client, config: CloudConfig, metrics: Ec2Observer | None = None) -> None:
    """Install zonal's limiter and retries (retry mode ``adaptive``) and the metrics hooks on a client
    (also one built elsewhere, such as the in-process simulator's)."""
    if config.retry_mode == "adaptive":
        limiter = RateLimiter(LimiterSettings(scale=config.rate_scale), observer=metrics)
        install(client, limiter, RetryPolicy(limiter, max_attempts=config.max_attempts))
    if metrics is not None:
        install_metrics(client, metrics)
