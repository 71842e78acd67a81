"""``zonal doctor``: find the zone problems of a whole cluster before they bite, each with its remedy.

A core over ports only (KubeApi, optionally Cloud): :func:`run_doctor` reads the cluster once
(:mod:`.cluster`), runs the layout checks (:mod:`.layout`) and the volume checks (:mod:`.volumes`),
and, when EC2 answers, the checks that need it; it returns a :class:`~.findings.DoctorReport`. It reuses
explain's facts and ``explain_pod``, so doctor and explain never disagree. When EC2 cannot be reached it
says so in one line and skips the EC2 checks. It must not write to the cluster or the cloud, print, or
import an adapter.
"""

from __future__ import annotations

from provisioner.doctor import findings as F
from provisioner.doctor.cluster import Cluster
from provisioner.doctor.findings import DoctorReport, Finding, Severity
from provisioner.doctor.layout import check_classes, check_node_instances, check_nodes, instance_ids
from provisioner.doctor.volumes import check_ec2_volumes, check_pods, check_volumes, volume_ids
from provisioner.errors import ZonalError, first_line
from provisioner.explain import explain_pod
from provisioner.explain.report import PodReport
from provisioner.ports.cloud import Cloud
from provisioner.ports.kube import KubeApi

__all__ = ["DoctorReport", "Finding", "Severity", "run_doctor"]


def run_doctor(
    kube: KubeApi,
    driver: str,
    cloud: Cloud | None = None,
    *,
    no_cloud_reason: str = "",
    cloud_required: bool = False,
) -> DoctorReport:
    """Every check over the cluster as it is now. ``cloud`` None: the EC2 checks are skipped with
    ``no_cloud_reason``; ``cloud_required`` (``--cloud aws``) makes an unreachable EC2 a warning."""
    cluster = Cluster.read(kube)
    report = DoctorReport(driver=driver, checked=cluster.counts())

    def explain(namespace: str, name: str) -> PodReport:
        return explain_pod(kube, namespace, name, None, None)

    report.findings += check_classes(cluster, driver)
    report.findings += check_nodes(cluster, driver)
    report.findings += check_volumes(cluster, driver)
    report.findings += check_pods(cluster, explain)
    skipped = ", ".join(F.EC2_CODES)
    if cloud is None:
        report.ec2 = f"EC2 checks skipped ({skipped}): {no_cloud_reason or 'no AWS access'}"
    else:
        _ec2_checks(report, cluster, driver, cloud, cloud_required)
    report.sort()
    return report


def _ec2_checks(report: DoctorReport, cluster: Cluster, driver: str, cloud: Cloud, required: bool) -> None:
    ids = instance_ids(cluster, driver)
    try:
        cloud.availability_zones()  # the cheapest call that proves EC2 answers at all
        instances = cloud.describe_instances(sorted(set(ids.values())))
        volumes = cloud.describe_volumes(volume_ids(cluster, driver))
    except ZonalError as e:
        reason = first_line(e)
        report.ec2 = f"EC2 not reachable in {cloud.region} ({reason}): skipped {', '.join(F.EC2_CODES)}"
        if required:
            report.findings.append(
                F.warning(
                    F.EC2_UNREACHABLE,
                    (f"EC2 {cloud.region}",),
                    f"EC2 did not answer ({reason}), so node and volume zones were not checked against it",
                    "check credentials, region and endpoint (AWS_REGION, AWS_ENDPOINT_URL_EC2), then run "
                    "zonal doctor again",
                )
            )
        return
    report.ec2_checked = True
    report.ec2 = f"EC2 {cloud.region}: {len(volumes)} volume(s), {len(instances)} instance(s) checked"
    report.findings += check_node_instances(cluster, ids, instances)
    report.findings += check_ec2_volumes(cluster, driver, volumes)
