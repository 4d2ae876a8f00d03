import subprocess
import sys

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


def test_the_commands_run_under_a_typer_without_the_help_internals_cli_adjusts():
    """pyproject pins typer 0.29, two of whose help internals cli/__init__ adjusts. A typer without them (a GPU
    image's own, beside a checkout on PYTHONPATH) must still import and run the commands: `import mirage.cli`
    stopped there with an AttributeError."""
    code = ("import typer.core as c; [delattr(k, n) for cls, n in ((c.TyperOption, 'display_type_rich'), "
            "(c.TyperArgument, '_usage_display_name')) for k in cls.__mro__ if n in vars(k)]; "
            "from typer.testing import CliRunner; from mirage.cli import app; "
            "r = CliRunner().invoke(app, ['benchmarks']); print(r.exit_code, 'mmmu' in r.output.lower())")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.stdout.split() == ["0", "True"], out.stderr[-2000:]
