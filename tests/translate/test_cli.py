"""``zonal translate``: YAML in and out through ``provisioner.cli.main``, and one-line errors with exit 2."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import pytest
import yaml

import provisioner.cli

IN_TREE_PV = """\
apiVersion: v1
kind: PersistentVolume
metadata:
  name: pvc-1
  labels:
    failure-domain.beta.kubernetes.io/zone: us-east-1a__us-east-1b
    failure-domain.beta.kubernetes.io/region: us-east-1
spec:
  capacity: {storage: 10Gi}
  accessModes: [ReadWriteOnce]
  awsElasticBlockStore:
    volumeID: aws://us-east-1a/vol-0123456789abcdef0
    fsType: ext4
"""

IN_TREE_SC = """\
apiVersion: storage.k8s.io/v1
kind: StorageClass
metadata: {name: gp2}
provisioner: kubernetes.io/aws-ebs
parameters: {type: gp2, zones: "us-east-1a,us-east-1b", fsType: ext4}
---
apiVersion: storage.k8s.io/v1
kind: StorageClass
metadata: {name: io1}
provisioner: kubernetes.io/aws-ebs
parameters: {type: io1, iopsPerGB: "10"}
"""


@pytest.fixture(autouse=True)
def _only_translate(monkeypatch: pytest.MonkeyPatch) -> None:
    """Register only this area's sub-command, so these tests do not depend on the other areas' modules."""
    monkeypatch.setattr(provisioner.cli, "COMMAND_MODULES", ("provisioner.cli.translate",))


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = provisioner.cli.main(list(argv))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def write(tmp_path: Path, text: str) -> str:
    path = tmp_path / "in.yaml"
    path.write_text(text)
    return str(path)


def test_pv_file_to_csi_yaml(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run(capsys, "translate", "pv", write(tmp_path, IN_TREE_PV))
    assert (code, err) == (0, "")
    [pv] = list(yaml.safe_load_all(out))
    assert pv["spec"]["csi"]["driver"] == "zonal.csi.dev"
    assert pv["spec"]["csi"]["volumeHandle"] == "vol-0123456789abcdef0"
    expressions = pv["spec"]["nodeAffinity"]["required"]["nodeSelectorTerms"][0]["matchExpressions"]
    assert expressions == [
        {"key": "topology.kubernetes.io/zone", "operator": "In", "values": ["us-east-1a", "us-east-1b"]}
    ]


def test_multi_document_storageclasses_with_driver_name(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, _ = run(
        capsys, "translate", "sc", "--driver-name", "example.csi.dev", write(tmp_path, IN_TREE_SC)
    )
    assert code == 0
    docs: list[dict[str, Any]] = list(yaml.safe_load_all(out))
    assert [d["metadata"]["name"] for d in docs] == ["gp2", "io1"]
    assert {d["provisioner"] for d in docs} == {"example.csi.dev"}
    assert docs[0]["allowedTopologies"][0]["matchLabelExpressions"][0]["values"] == [
        "us-east-1a",
        "us-east-1b",
    ]
    assert docs[1]["parameters"] == {"type": "io1", "iopsPerGB": "10"}


def test_stdin_and_reverse_round_trip(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    _, csi_yaml, _ = run(capsys, "translate", "pv", write(tmp_path, IN_TREE_PV))
    monkeypatch.setattr("sys.stdin", io.StringIO(csi_yaml))
    code, out, _ = run(capsys, "translate", "pv", "--reverse", "-")
    assert code == 0
    [pv] = list(yaml.safe_load_all(out))
    assert pv["spec"]["awsElasticBlockStore"] == {"volumeID": "vol-0123456789abcdef0", "fsType": "ext4"}
    assert pv["metadata"]["labels"]["failure-domain.beta.kubernetes.io/zone"] == "us-east-1a__us-east-1b"


def test_list_documents_are_translated_item_by_item(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    pv = yaml.safe_load(IN_TREE_PV)
    del pv["kind"]  # kubectl's typed lists may leave the item kind out
    listing = {"apiVersion": "v1", "kind": "PersistentVolumeList", "items": [pv]}
    code, out, _ = run(capsys, "translate", "pv", write(tmp_path, yaml.safe_dump(listing)))
    assert code == 0
    [doc] = list(yaml.safe_load_all(out))
    assert doc["kind"] == "PersistentVolumeList"
    assert doc["items"][0]["spec"]["csi"]["driver"] == "zonal.csi.dev"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("kind: PersistentVolume\nspec: [unclosed\n", "not valid YAML"),
        ("", "no YAML documents"),
        ("- just\n- a list\n", "document 1: expected a PersistentVolume mapping"),
        (
            IN_TREE_PV.replace("awsElasticBlockStore", "gcePersistentDisk"),
            "awsElasticBlockStore must be a mapping",
        ),
        (IN_TREE_PV + "---\nkind: StorageClass\n", "document 2: expected kind PersistentVolume"),
        (IN_TREE_PV.replace("aws://us-east-1a/vol-", "aws://us-east-1a/snap-"), "invalid AWS volume id"),
    ],
)
def test_bad_input_is_one_line_exit_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], text: str, message: str
) -> None:
    code, out, err = run(capsys, "translate", "pv", write(tmp_path, text))
    assert code == 2
    assert out == ""
    assert err.startswith("zonal: error: ") and message in err
    assert err.count("\n") == 1 and "Traceback" not in err


def test_missing_file_and_bad_driver_name(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run(capsys, "translate", "pv", str(tmp_path / "absent.yaml"))
    assert code == 2 and "cannot read" in err and err.count("\n") == 1
    code, _, err = run(capsys, "translate", "pv", "--driver-name=-bad-", write(tmp_path, IN_TREE_PV))
    assert code == 2 and "not a valid CSI plugin name" in err


def test_reverse_of_a_foreign_storageclass_fails(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run(capsys, "translate", "storageclass", "--reverse", write(tmp_path, IN_TREE_SC))
    assert code == 2 and "provisioner is 'kubernetes.io/aws-ebs'" in err
