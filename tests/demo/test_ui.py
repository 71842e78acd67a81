"""The demo's waits say how long they have waited, at a steady interval, also in a log (not a TTY)."""

from __future__ import annotations

import io

from provisioner.embedded.demo.ui import Ui


def test_a_long_wait_reports_progress_at_a_steady_interval_off_a_terminal() -> None:
    out = io.StringIO()
    ui = Ui(out)
    ui.progress_every = 0.05
    calls = iter(range(100))
    value = ui.wait_for("waiting for CreateVolume", lambda: "done" if next(calls) >= 6 else None, timeout=60)
    assert value == "done"
    lines = out.getvalue().splitlines()
    assert lines[0] == "       … waiting for CreateVolume"
    progress = lines[1:]
    assert progress, lines
    for line in progress:
        assert line.startswith("       … waiting for CreateVolume: still waiting (")
        assert line.endswith("s of 60s so far)")


def test_a_quick_wait_prints_one_line() -> None:
    out = io.StringIO()
    assert Ui(out).wait_for("waiting for the PV", lambda: 1) == 1
    assert out.getvalue() == "       … waiting for the PV\n"
