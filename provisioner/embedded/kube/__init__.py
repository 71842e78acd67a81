"""Kubernetes without a cluster: :mod:`.memory` (a stateful in-memory API) and :mod:`.fakeapi` (that
state served over HTTP for the official client). Test doubles and the demo's cluster, never production.
"""
