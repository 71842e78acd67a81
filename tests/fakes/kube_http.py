"""The HTTP fake API server now lives in the package (:mod:`provisioner.embedded.kube.fakeapi`)."""

from provisioner.embedded.kube.fakeapi import FakeApiServer

__all__ = ["FakeApiServer"]
