"""The machine's side of the Node service: the only package that runs OS commands.

:mod:`.linux` (``run`` and the :class:`~provisioner.mount.linux.LinuxMounter`), :mod:`.devices`
(finding and verifying a volume's block device) and :mod:`.loopback` (loop devices for the embedded
cloud). Nothing here decides CSI policy; :mod:`provisioner.node` does.
"""
