"""Connecting a command to Kubernetes, with a failure a user can act on.

Why it exists: ``zonal provisioner`` and ``zonal explain`` both start by loading a kubeconfig and
reaching the API server; each way that fails (no file, broken file, unknown context, server down,
credentials refused) must end the command with one line that names the cause and the fix, never a
traceback and never a silent wait. It builds the client and checks access; it decides nothing else.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from provisioner.cli import CliError
from provisioner.ports.kube import KubeError, KubeForbidden

if TYPE_CHECKING:
    from provisioner.kube.client import KubeClient

CONFIG_FIX = "pass --kubeconfig PATH (or set KUBECONFIG) naming a working kubeconfig"
UNREACHABLE_FIX = "check that the cluster is up and that the kubeconfig's server address is right"
REFUSED_FIX = "check the kubeconfig's user credentials (in a pod: the ServiceAccount and its RBAC)"


def connect(
    kubeconfig: str, context: str = "", qps: float = 0.0, burst: int = 10, timeout: float = 10.0
) -> KubeClient:
    """A client for the cluster the flags name, after one authenticated read proved it answers.

    Raises CliError with the cause and the fix."""
    from provisioner.kube.client import KubeClient, load_configuration
    from provisioner.kube.kubeconfig import KubeConfigError

    try:
        configuration = load_configuration(kubeconfig, context)
    except KubeConfigError as e:
        raise CliError(f"{e}; {CONFIG_FIX}") from e
    kube = KubeClient(configuration, qps, burst)
    try:
        kube.check_access(timeout)
    except KubeForbidden as e:
        kube.close()
        raise CliError(f"the Kubernetes API server at {kube.server} refused us: {e}; {REFUSED_FIX}") from e
    except KubeError as e:
        kube.close()
        raise CliError(
            f"cannot reach the Kubernetes API server at {kube.server}: {e}; {UNREACHABLE_FIX}"
        ) from e
    return kube
