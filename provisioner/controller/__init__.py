"""The CSI Controller service's behaviour, over ports only (no grpc, no boto3).

:mod:`.core` holds :class:`ControllerCore` (create/delete/list/get/probe), :mod:`.attach` the
publish/unpublish half, :mod:`.snapshots` the snapshot RPCs, :mod:`.sources` restore and clone,
:mod:`.modify` expansion and modification (with the merge window); the pieces they share are
:mod:`.ownership` (which objects are the driver's, the check before a delete), :mod:`.checks` (request
checks), :mod:`.waiter` (polling on the clock) and :mod:`.queries` (the read RPCs and what they answer). A
package rather than one module so the import-linter contracts on ``provisioner.controller`` cover
every part of it.
"""

from provisioner.controller.attach import DEVICE_NAMES, PUBLISH_CONTEXT_DEVICE_PATH
from provisioner.controller.core import ControllerCore
from provisioner.controller.queries import Validation, VolumeStatus
from provisioner.controller.tokens import client_token

__all__ = [
    "DEVICE_NAMES",
    "PUBLISH_CONTEXT_DEVICE_PATH",
    "ControllerCore",
    "Validation",
    "VolumeStatus",
    "client_token",
]
