import pytest
import typer
from typer.testing import CliRunner

from mirage.cli import app
from mirage.cli.common import loading, user_errors
from mirage.errors import MirageError, UsageError


def test_a_user_error_is_one_line_and_a_bug_keeps_its_traceback():
    with pytest.raises(typer.Exit) as stop:
        with user_errors():
            raise UsageError("--flag: bad")
    assert stop.value.exit_code == 2
    with pytest.raises(ValueError, match="an internal invariant"):  # not caught: a bug shows its traceback
        with user_errors():
            raise ValueError("an internal invariant")
    with pytest.raises(MirageError, match="bad split"):  # what a loader refuses is the user's input
        with loading():
            raise ValueError("bad split")


def test_study_refuses_a_bad_model_spec_as_a_user_error(tmp_path):
    res = CliRunner().invoke(app, ["study", "--model", "hf:", "--limit", "2", "--out", str(tmp_path / "s")])
    assert res.exit_code == 2 and "needs a hub id" in res.output
