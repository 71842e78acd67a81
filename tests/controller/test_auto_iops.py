"""allowAutoIOPSIncreaseOnModify's rule: the IOPS a volume remembering it gets at a new size (the
expansion path, one ModifyVolume with a floor, is tested with the merge window in test_modify.py)."""

from __future__ import annotations

import pytest

from provisioner.controller.drivertags import auto_iops
from provisioner.model import Volume, VolumeState


@pytest.mark.parametrize(
    ("tags", "volume_type", "iops", "size", "expected"),
    [
        (
            {"ebs.csi.aws.com/AllowAutoIOPSIncreaseOnModify": "true", "ebs.csi.aws.com/IOPSPerGb": "50"},
            "io2",
            500,
            20,
            1000,
        ),
        # capped at io1's 50 IOPS/GiB and 64,000 maximum
        (
            {"ebs.csi.aws.com/AllowAutoIOPSIncreaseOnModify": "true", "ebs.csi.aws.com/IOPSPerGb": "100"},
            "io1",
            100,
            2000,
            64000,
        ),
        (
            {"ebs.csi.aws.com/AllowAutoIOPSIncreaseOnModify": "true", "ebs.csi.aws.com/IOPSPerGb": "50"},
            "io2",
            5000,
            20,
            None,
        ),
        ({"ebs.csi.aws.com/AllowAutoIOPSIncreaseOnModify": "true"}, "io2", 500, 20, None),  # no ratio
        (
            {"ebs.csi.aws.com/AllowAutoIOPSIncreaseOnModify": "true", "ebs.csi.aws.com/IOPSPerGb": "5"},
            "gp2",
            None,
            20,
            None,
        ),
        (
            {"zonal.csi.dev/AllowAutoIOPSIncreaseOnModify": "true", "zonal.csi.dev/IOPSPerGb": "50"},
            "io2",
            500,
            20,
            None,
        ),
    ],
)
def test_auto_iops_rule(
    tags: dict[str, str], volume_type: str, iops: int | None, size: int, expected: int | None
) -> None:
    volume = Volume(
        "vol-0123456789abcdef0", 10, "us-east-1a", VolumeState.AVAILABLE, volume_type, iops, tags=tags
    )
    assert auto_iops(volume, "ebs.csi.aws.com", size) == expected
