"""The embedded world: everything that stands in for AWS, a cluster or a disk. Not the product.

:mod:`.ec2` is the EC2 simulator (moto plus what moto lacks), :mod:`.kube` the in-memory cluster and
its HTTP API server, :mod:`.loopback` backs simulated volumes with loop devices, :mod:`.cloud` wires
them into ``--cloud embedded``, and :mod:`.demo` is ``zonal demo``. Production modules never import
this package; only the composition root (:mod:`provisioner.cli`) does, lazily, when ``--cloud
embedded`` or ``zonal demo`` runs. Tests and benchmarks use it freely.
"""
