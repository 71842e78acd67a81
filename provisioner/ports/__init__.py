"""Protocols for every I/O boundary. Cores depend on these; adapters and test fakes implement them.

One module per boundary: :mod:`.clock`, :mod:`.cloud` (EC2), and the node and Kubernetes ports in
their own modules. Nothing here performs I/O except :class:`~provisioner.ports.clock.SystemClock`.
"""
