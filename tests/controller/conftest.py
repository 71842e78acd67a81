"""Fixtures for the controller-core tests: a FakeCloud, a FakeClock and a core over both."""

from __future__ import annotations

import pytest

from provisioner.config import ControllerConfig, DriverConfig
from provisioner.controller import ControllerCore
from tests.fakes.clock import FakeClock
from tests.fakes.cloud import FakeCloud

DRIVER = DriverConfig(driver_name="zonal.csi.dev", cluster_id="test-cluster", extra_tags={"team": "storage"})


@pytest.fixture
def cloud() -> FakeCloud:
    return FakeCloud()


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def core(cloud: FakeCloud, clock: FakeClock) -> ControllerCore:
    return ControllerCore(cloud, clock, DRIVER, ControllerConfig())
