"""The machine's side of the Node service: the only package that runs OS commands.

:mod:`.linux` (``run`` and the :class:`~provisioner.mount.linux.LinuxMounter`) and :mod:`.devices`
(finding and verifying a volume's block device); the embedded cloud's loop devices are
:mod:`provisioner.embedded.loopback`. Nothing here decides CSI policy; :mod:`provisioner.node` does.
"""
