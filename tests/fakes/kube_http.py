"""The HTTP fake API server now lives in the package (:mod:`provisioner.kube.fakeapi`)."""

from provisioner.kube.fakeapi import FakeApiServer

__all__ = ["FakeApiServer"]
