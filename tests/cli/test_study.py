"""`mirage study`'s command line: --data-dir per benchmark, and bad flags refused with one line before any work."""

from __future__ import annotations

import pytest
from typer.testing import CliRunner

from mirage.cli import app
from mirage.cli.study import data_dirs
from mirage.errors import UsageError


def test_data_dir_goes_to_its_benchmark():
    assert data_dirs(["scienceqa=/d/sqa"], ["shapes", "scienceqa"]) == {"scienceqa": {"data_dir": "/d/sqa"}}
    assert data_dirs(["/d/sqa"], ["shapes", "scienceqa"]) == {"scienceqa": {"data_dir": "/d/sqa"}}  # the one taker
    with pytest.raises(UsageError, match="say which benchmark"):
        data_dirs(["/d/x"], ["mmstar", "scienceqa"])
    with pytest.raises(UsageError, match="not one of --benchmark"):
        data_dirs(["ai2d=/d/x"], ["mmstar", "scienceqa"])
    with pytest.raises(UsageError, match="applies to"):
        data_dirs(["shapes=/d/x"], ["shapes", "scienceqa"])


@pytest.mark.parametrize("args, message", [
    (["--preset", "quik"], "did you mean 'quick'"),
    (["--benchmark", "shapes,mmstr"], "did you mean 'mmstar'"),
    (["--data-dir", "ai2d=/x", "--benchmark", "shapes,scienceqa"], "not one of --benchmark"),
    (["--batch-size", "4", "--memory", "8"], "--memory applies to --batch-size auto"),
    (["--batch-size", "many"], "neither a positive integer nor auto"),
])
def test_bad_flags_are_one_red_line_and_write_nothing(tmp_path, args, message):
    res = CliRunner().invoke(app, ["study", *args, "--out", str(tmp_path / "s")])
    assert res.exit_code == 2 and message in " ".join(res.output.split()), res.output
    assert not (tmp_path / "s").exists()
