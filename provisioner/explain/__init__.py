"""``zonal explain``: why a volume is where it is, and why a pod cannot go where its volumes are.

A core over ports only (KubeApi, optionally Cloud): :func:`explain_pvc` and :func:`explain_pod` return
report records (:mod:`.report`); rendering is the CLI's job (:mod:`provisioner.cli.explain`). It reuses
the provisioner loop's requirements glue and the controller's zone choice, so explain and the loop
agree. It must not write to the cluster or the cloud, print, or import an adapter.
"""

from __future__ import annotations

from provisioner.explain.pod import explain_pod
from provisioner.explain.pvc import explain_pvc
from provisioner.explain.report import VERDICTS, PodReport, PvcReport, Verdict

__all__ = ["VERDICTS", "PodReport", "PvcReport", "Verdict", "explain_pod", "explain_pvc"]
