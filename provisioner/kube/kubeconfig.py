"""Where the Kubernetes client's configuration comes from, and what to say when it cannot be had.

Why it exists: the official client reports a missing file, a broken YAML file, an absent context or
"not in a pod" as ``ConfigException``/``yaml`` errors with tracebacks a user cannot act on. Here every
such case becomes a :class:`KubeConfigError` whose message names the file and what is wrong with it, in
one line; the CLI adds which flag fixes it. It reads files only; it never contacts the API server
(:meth:`provisioner.kube.client.KubeClient.check_access` does that).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import yaml
from kubernetes import config as _config

from provisioner.ports.kube import KubeError

k8s_config: Any = _config

DEFAULT_KUBECONFIG = "~/.kube/config"


class KubeConfigError(KubeError):
    """No usable Kubernetes configuration: the message says which file (or source) and why."""


def _yaml_problem(e: yaml.YAMLError) -> str:
    mark = getattr(e, "problem_mark", None)
    problem = getattr(e, "problem", None) or "cannot be parsed"
    where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
    return f"{problem}{where}"


def _read(path: Path) -> Any:
    """The parsed kubeconfig at ``path``; KubeConfigError when it is missing, unreadable or not YAML."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError as e:
        raise KubeConfigError(f"kubeconfig {path} does not exist") from e
    except (OSError, UnicodeDecodeError) as e:
        reason = e.strerror if isinstance(e, OSError) and e.strerror else str(e)
        raise KubeConfigError(f"kubeconfig {path} cannot be read: {reason}") from e
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as e:
        raise KubeConfigError(f"kubeconfig {path} is not valid YAML: {_yaml_problem(e)}") from e
    if not isinstance(data, dict) or not (data.get("clusters") or data.get("contexts")):
        raise KubeConfigError(f"kubeconfig {path} holds no clusters or contexts")
    return data


def _check_context(path: Path, data: Any, context: str) -> None:
    names = [c.get("name") for c in data.get("contexts") or [] if isinstance(c, dict)]
    wanted = context or data.get("current-context") or ""
    if not wanted:
        raise KubeConfigError(f"kubeconfig {path} sets no current-context and no context was asked for")
    if wanted not in names:
        known = ", ".join(str(n) for n in names) or "none"
        raise KubeConfigError(f"kubeconfig {path} has no context {wanted!r} (it has: {known})")


def load_kubeconfig_file(path: str, context: str, client_configuration: Any) -> None:
    """Fill ``client_configuration`` from the kubeconfig at ``path`` (``~`` expanded)."""
    file = Path(os.path.expanduser(path))
    data = _read(file)
    _check_context(file, data, context)
    try:
        k8s_config.load_kube_config(
            config_file=str(file), context=context or None, client_configuration=client_configuration
        )
    except (k8s_config.ConfigException, OSError, ValueError, TypeError, KeyError, AttributeError) as e:
        raise KubeConfigError(f"kubeconfig {file} is not usable: {str(e).strip() or type(e).__name__}") from e


def load_configuration(
    kubeconfig: str = "", context: str = "", default_kubeconfig: str = DEFAULT_KUBECONFIG
) -> Any:
    """The client configuration: ``kubeconfig`` when given (or a ``context``), else the pod's service
    account when running in a pod, else ``default_kubeconfig``. Raises KubeConfigError."""
    from kubernetes import client as k8s_client

    cfg: Any = k8s_client.Configuration()
    if kubeconfig:
        load_kubeconfig_file(kubeconfig, context, cfg)
        return cfg
    if not context:
        try:
            k8s_config.load_incluster_config(client_configuration=cfg)
            return cfg
        except k8s_config.ConfigException as e:
            in_cluster_error = str(e)
    else:
        in_cluster_error = ""
    default = Path(os.path.expanduser(default_kubeconfig))
    if not default.exists():
        raise KubeConfigError(
            f"no Kubernetes configuration: not running in a pod ({in_cluster_error or 'a context was asked'})"
            f" and {default} does not exist"
        )
    load_kubeconfig_file(str(default), context, cfg)
    return cfg
