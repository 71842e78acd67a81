"""Fixtures shared by every suite."""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator

import pytest

_AWS_VARS = (
    "AWS_ACCESS_KEY_ID",
    "AWS_SECRET_ACCESS_KEY",
    "AWS_SESSION_TOKEN",
    "AWS_SECURITY_TOKEN",
    "AWS_PROFILE",
    "AWS_DEFAULT_PROFILE",
    "AWS_CONFIG_FILE",
    "AWS_SHARED_CREDENTIALS_FILE",
    "AWS_ENDPOINT_URL",
    "AWS_ENDPOINT_URL_EC2",
    "AWS_REGION",
    "AWS_DEFAULT_REGION",
    "AWS_ROLE_ARN",
    "AWS_WEB_IDENTITY_TOKEN_FILE",
)


@pytest.fixture(autouse=True)
def _no_real_aws(monkeypatch: pytest.MonkeyPatch, tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """Strip real AWS credentials and config so no test can reach a real account by accident."""
    for name in _AWS_VARS:
        monkeypatch.delenv(name, raising=False)
    empty = tmp_path_factory.mktemp("aws-config")
    monkeypatch.setenv("AWS_CONFIG_FILE", str(empty / "config"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(empty / "credentials"))
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    yield


@pytest.fixture(autouse=True)
def _own_runtime_dir(monkeypatch: pytest.MonkeyPatch, tmp_path_factory: pytest.TempPathFactory) -> None:
    """Each test's embedded processes record their kernel state in a folder of its own, so no test
    reclaims (or reports) what another test's process left."""
    monkeypatch.setenv("ZONAL_RUNTIME_DIR", str(tmp_path_factory.mktemp("zonal-run")))


@pytest.fixture(autouse=True)
def _logging_as_found() -> Iterator[None]:
    """Undo what a test's in-process ``zonal`` run did to logging (``provisioner.cli.main`` points the root
    logger at the stderr pytest captured for that test and sets levels), so later tests do not log into
    a closed stream or at another level: every test sees logging as the one before it found it."""
    root = logging.getLogger()
    handlers = list(root.handlers)
    levels = {
        name: logger.level
        for name, logger in [("", root), *logging.Logger.manager.loggerDict.items()]
        if isinstance(logger, logging.Logger)
    }
    yield
    for handler in root.handlers[:]:
        # pytest's own capturing handlers come and go with each phase; leave them to pytest.
        if handler not in handlers and not type(handler).__module__.startswith("_pytest"):
            root.removeHandler(handler)
    for name, level in levels.items():
        logging.getLogger(name or None).setLevel(level)


def is_root() -> bool:
    return os.geteuid() == 0
