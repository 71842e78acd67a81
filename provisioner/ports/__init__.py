"""Protocols for every I/O boundary. Cores depend on these; adapters and test fakes implement them.

One module per boundary: :mod:`.clock`, :mod:`.cloud` (EC2), :mod:`.node`, :mod:`.kube`, :mod:`.csi`
(the CSI vocabulary both sides of the wire share, and the CSI client) and :mod:`.observers` (what the
cores report to the metrics). Nothing here performs I/O except
:class:`~provisioner.ports.clock.SystemClock`.
"""
