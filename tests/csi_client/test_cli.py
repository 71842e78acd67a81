"""``zonal csi`` against a real server on a unix socket: output for people, ``-o json``, exit codes,
errors shown by gRPC code name."""

from __future__ import annotations

import json
import socket
from pathlib import Path

import pytest

from provisioner.model import ZONE_KEY
from tests.csi_client.conftest import NODE, OTHER_NODE, STAGED_VOL, Driver, zonal_csi

Cap = pytest.CaptureFixture[str]


def lines(text: str) -> dict[str, str]:
    out = {}
    for line in text.splitlines():
        key, sep, value = line.partition(": ")
        if sep:
            out[key] = value
    return out


def create(capsys: Cap, endpoint: str, *extra: str) -> dict[str, object]:
    run = zonal_csi(capsys, "--endpoint", endpoint, "-o", "json", "create-volume", "--name", "pvc-1", *extra)
    assert run.code == 0, run.err
    result: dict[str, object] = json.loads(run.out)
    return result


def test_info_lists_every_service_that_answers(capsys: Cap, driver: Driver) -> None:
    run = zonal_csi(capsys, "--endpoint", driver.endpoint, "info")
    assert run.code == 0 and run.err == ""
    shown = lines(run.out)
    assert shown["name"] == "zonal.csi.dev"
    assert shown["vendor_version"] == "0.1.0"
    assert "CONTROLLER_SERVICE" in shown["plugin_capabilities"].split(", ")
    assert "CREATE_DELETE_VOLUME" in shown["controller_capabilities"].split(", ")
    assert "STAGE_UNSTAGE_VOLUME" in shown["node_capabilities"].split(", ")


def test_info_leaves_out_a_service_that_is_not_served(capsys: Cap, controller_only: str) -> None:
    run = zonal_csi(capsys, "info", "--endpoint", controller_only, "-o", "json")  # options after the verb
    assert run.code == 0
    info = json.loads(run.out)
    assert "controller_capabilities" in info and "node_capabilities" not in info


def test_probe(capsys: Cap, driver: Driver) -> None:
    run = zonal_csi(capsys, "--endpoint", f"unix://{driver.endpoint[len('unix://') :]}", "probe")
    assert (run.code, run.out) == (0, "ready: true\n")


def test_create_in_a_zone_shows_topology_and_size(capsys: Cap, driver: Driver) -> None:
    run = zonal_csi(
        capsys, "--endpoint", driver.endpoint, "create-volume", "--name", "pvc-1", "--size", "10Gi",
        "--zone", "us-east-1b", "--param", "type=gp3",
    )  # fmt: skip
    assert run.code == 0, run.err
    shown = lines(run.out)
    assert shown["volume_id"].startswith("vol-")
    assert shown["capacity_bytes"] == "10737418240 (10Gi)"
    assert shown["accessible_topology"] == f"{ZONE_KEY}=us-east-1b"
    assert driver.cloud.volumes[shown["volume_id"]].volume.zone == "us-east-1b"


def test_create_with_preferred_and_requisite_as_json(capsys: Cap, driver: Driver) -> None:
    created = create(
        capsys, driver.endpoint, "--size", "1G",
        "--requisite", f"{ZONE_KEY}=us-east-1a", "--requisite", f"{ZONE_KEY}=us-east-1c",
        "--preferred", f"{ZONE_KEY}=us-east-1c",
    )  # fmt: skip
    assert created["accessible_topology"] == [{ZONE_KEY: "us-east-1c"}]
    # 1G is 10^9 bytes; EBS rounds up to whole GiB.
    assert created["capacity_bytes"] == 1 << 30


def test_publish_list_get_unpublish_delete(capsys: Cap, driver: Driver) -> None:
    ep = ("--endpoint", driver.endpoint)
    vol = str(create(capsys, driver.endpoint, "--size", "4Gi", "--zone", "us-east-1b")["volume_id"])
    run = zonal_csi(capsys, *ep, "publish", vol, "--node-id", NODE)
    assert run.code == 0, run.err
    context = dict(pair.split("=", 1) for pair in lines(run.out)["publish_context"].split(","))
    assert context["devicePath"].startswith("/dev/xvd") and context["volumeSizeBytes"] == str(4 * 1024**3)

    got = json.loads(zonal_csi(capsys, *ep, "-o", "json", "get-volume", vol).out)
    assert got["published_node_ids"] == [NODE] and got["capacity_bytes"] == 4 << 30
    listed = zonal_csi(capsys, *ep, "list-volumes")
    assert (
        listed.code == 0 and f"volume_id: {vol}" in listed.out and f"published_node_ids: {NODE}" in listed.out
    )

    assert zonal_csi(capsys, *ep, "unpublish", vol, "--node-id", NODE).code == 0
    run = zonal_csi(capsys, *ep, "delete-volume", vol)
    assert (run.code, lines(run.out)) == (0, {"volume_id": vol, "deleted": "true"})
    assert vol in driver.cloud.deleted


def test_list_volumes_shows_blocks_separated_by_blank_lines(capsys: Cap, driver: Driver) -> None:
    for name in ("pvc-a", "pvc-b"):
        assert zonal_csi(
            capsys, "--endpoint", driver.endpoint, "create-volume", "--name", name, "--size", "1Gi"
        ).code == 0  # fmt: skip
    run = zonal_csi(capsys, "--endpoint", driver.endpoint, "list-volumes")
    blocks = run.out.strip().split("\n\n")
    assert len(blocks) == 2 and all(b.startswith("volume_id: vol-") for b in blocks)


def test_wrong_zone_publish_is_failed_precondition(capsys: Cap, driver: Driver) -> None:
    vol = str(create(capsys, driver.endpoint, "--size", "1Gi", "--zone", "us-east-1b")["volume_id"])
    run = zonal_csi(capsys, "--endpoint", driver.endpoint, "publish", vol, "--node-id", OTHER_NODE)
    assert run.code == 1 and run.out == ""
    assert run.err.startswith("zonal csi: FAILED_PRECONDITION: ")
    assert len(run.err.strip().splitlines()) == 1


def test_unknown_volume_is_not_found(capsys: Cap, driver: Driver) -> None:
    run = zonal_csi(capsys, "--endpoint", driver.endpoint, "get-volume", "vol-0123456789abcdef0")
    assert run.code == 1 and run.err.startswith("zonal csi: NOT_FOUND: ")


def test_a_service_that_is_not_served_is_unimplemented(capsys: Cap, node_only: str) -> None:
    run = zonal_csi(capsys, "--endpoint", node_only, "create-volume", "--name", "x", "--size", "1Gi")
    assert run.code == 1 and run.err.startswith("zonal csi: UNIMPLEMENTED: ")


def test_nobody_listening_is_unavailable(capsys: Cap, tmp_path: Path) -> None:
    run = zonal_csi(capsys, "--endpoint", str(tmp_path / "nobody.sock"), "--timeout", "5", "probe")
    assert run.code == 1 and run.err.startswith("zonal csi: UNAVAILABLE: ")


def test_node_verbs(capsys: Cap, driver: Driver) -> None:
    ep = ("--endpoint", driver.endpoint)
    info = zonal_csi(capsys, *ep, "node-info")
    assert info.code == 0
    shown = lines(info.out)
    assert shown["node_id"] == NODE
    assert f"{ZONE_KEY}=us-east-1b" in shown["accessible_topology"].split(",")

    staging, target = "/var/lib/kubelet/staging/x", "/var/lib/kubelet/pods/p/mount"
    driver.mounter.add_dirs(staging)
    pc = ("--publish-context", "devicePath=/dev/xvdba")
    steps = [
        ("stage", STAGED_VOL, "--staging-path", staging, *pc),
        ("node-publish", STAGED_VOL, "--staging-path", staging, "--target-path", target, *pc),
        ("stats", STAGED_VOL, "--path", target),
        ("node-unpublish", STAGED_VOL, "--target-path", target),
        ("unstage", STAGED_VOL, "--staging-path", staging),
    ]
    outputs = []
    for step in steps:
        run = zonal_csi(capsys, *ep, *step)
        assert run.code == 0, (step, run.err)
        outputs.append(lines(run.out))
    assert outputs[0]["staged"] == "true"
    assert driver.mounter.calls[0] == ("format", "/dev/nvme1n1", "ext4")
    assert outputs[2]["total_bytes"] == "10737418240 (10Gi)" and outputs[2]["used_inodes"] == "10"
    assert driver.mounter.table == []


def test_snapshot_verbs(capsys: Cap, driver: Driver) -> None:
    ep = ("--endpoint", driver.endpoint, "-o", "json")
    vol = str(create(capsys, driver.endpoint, "--size", "1Gi")["volume_id"])
    run = zonal_csi(capsys, *ep, "create-snapshot", vol, "--name", "snap-1")
    assert run.code == 0, run.err
    snap = json.loads(run.out)
    assert snap["source_volume_id"] == vol and snap["snapshot_id"]
    listed = json.loads(zonal_csi(capsys, *ep, "list-snapshots", "--source-volume-id", vol).out)
    assert [s["snapshot_id"] for s in listed["snapshots"]] == [snap["snapshot_id"]]
    assert zonal_csi(capsys, *ep, "delete-snapshot", snap["snapshot_id"]).code == 0


@pytest.mark.parametrize(
    "argv",
    [
        ["--endpoint", "http://x", "probe"],
        ["--endpoint", "/s", "create-volume", "--name", "x", "--size", "ten"],
        [
            "--endpoint",
            "/s",
            "create-volume",
            "--name",
            "x",
            "--size",
            "1Gi",
            "--zone",
            "a",
            "--preferred",
            "k=v",
        ],
        ["--endpoint", "/s", "create-volume", "--name", "x", "--size", "1Gi", "--param", "novalue"],
        ["--endpoint", "/s", "create-volume", "--name", "x", "--size", "1Gi", "--access-mode", "sometimes"],
        ["--endpoint", "/s", "publish", "vol-1"],  # --node-id is required
        ["--endpoint", "/s", "frobnicate"],
    ],
)
def test_usage_errors_exit_2(capsys: Cap, argv: list[str]) -> None:
    run = zonal_csi(capsys, *argv)
    assert run.code == 2 and "error:" in run.err


def test_the_endpoint_default_is_the_servers_and_described_alike() -> None:
    """``zonal csi`` and ``zonal node|controller|all`` default to the same endpoint and say so in the same
    words (the issue: one said "$CSI_ENDPOINT", the other "$CSI_ENDPOINT or unix:///csi/csi.sock")."""
    from provisioner.cli import all_parsers, build_parser
    from provisioner.csi.endpoint import parse_endpoint

    parser = build_parser()
    assert parser.parse_args(["csi", "probe"]).endpoint == parse_endpoint("unix:///csi/csi.sock")
    assert parser.parse_args(["node"]).endpoint == "unix:///csi/csi.sock"
    helps = {}
    by_prog = {p.prog: p for p in all_parsers(parser)}
    for command in ("csi", "node", "controller", "all"):
        sub = by_prog[f"zonal {command}"]
        [action] = [a for a in sub._actions if "--endpoint" in a.option_strings]
        text = sub._get_formatter()._expand_help(action)
        helps[command] = text[text.rindex("(") :]
    assert set(helps.values()) == {"(default $CSI_ENDPOINT, else unix:///csi/csi.sock)"}, helps


def test_a_wrong_endpoint_names_the_cause(capsys: Cap, tmp_path: Path) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # closed when the block ends: nothing listens there
    run = zonal_csi(capsys, "--endpoint", f"tcp://127.0.0.1:{port}", "--timeout", "5", "probe")
    assert run.code == 1
    assert f"nothing listens at tcp://127.0.0.1:{port} (connection refused)" in run.err
    missing = tmp_path / "none.sock"
    run = zonal_csi(capsys, "--endpoint", f"unix://{missing}", "--timeout", "5", "probe")
    assert run.code == 1 and f"no socket at {missing};" in run.err


def test_endpoint_from_the_environment(capsys: Cap, driver: Driver, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CSI_ENDPOINT", driver.endpoint)
    assert zonal_csi(capsys, "probe").code == 0


def test_registered_in_zonal_main(capsys: Cap, driver: Driver) -> None:
    from provisioner.cli import main

    capsys.readouterr()
    # main() points logging at this test's captured stderr; tests/conftest.py puts it back afterwards.
    assert main(["csi", "--endpoint", driver.endpoint, "probe"]) == 0
    assert capsys.readouterr().out == "ready: true\n"


def test_timeout_bounds_each_call(capsys: Cap, driver: Driver) -> None:
    hold = driver.cloud.hold("create_volume")
    try:
        run = zonal_csi(
            capsys, "--endpoint", driver.endpoint, "--timeout", "1", "create-volume", "--name", "slow",
            "--size", "1Gi",
        )  # fmt: skip
    finally:
        hold.release.set()
    assert hold.entered.is_set()
    assert run.code == 1
    # The driver answers ABORTED just before the deadline, or the client gives up first.
    assert run.err.startswith(("zonal csi: DEADLINE_EXCEEDED: ", "zonal csi: ABORTED: ")), run.err
