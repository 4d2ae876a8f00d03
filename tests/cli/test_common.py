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


def test_the_gpu_running_out_of_memory_is_one_line_that_says_what_to_change_and_what_is_kept(tmp_path, monkeypatch):
    """A batch too large for the card is the user's to change, not a traceback: one line with torch's own first line,
    the flags that fit it, and what the run directory keeps (the same command resumes)."""
    import importlib

    import torch

    evaluate = importlib.import_module("mirage.evaluate")  # the module (the package exports a function so named)
    real = evaluate.evaluate_conditions

    def half_then_oom(*a, **k):
        real(*a, **k)  # the first conditions' rows are written, then the next batch does not fit
        raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 20.00 GiB. GPU 0 has a total "
                                          "capacity of 79.18 GiB of which 1.2 GiB is free.\nmore detail")

    monkeypatch.setattr(evaluate, "evaluate_conditions", half_then_oom)
    out = tmp_path / "run"
    res = CliRunner().invoke(app, ["eval", "--model", "demo", "--conditions", "real", "--limit", "4", "--out",
                                   str(out), "-q"])
    assert res.exit_code == 2, res.output
    text = " ".join(res.output.split())  # rich wraps the one line at the console's width
    assert text.startswith("error: the GPU ran out of memory (CUDA out of memory. Tried to allocate 20.00 GiB. GPU 0")
    assert "--batch-size" in text and "Traceback" not in text and "more detail" not in text
    assert "4 finished rows kept in" in text and text.endswith("rerun the same command to resume.")
    monkeypatch.setattr(evaluate, "evaluate_conditions", real)
    with pytest.raises(RuntimeError, match="an internal invariant"):  # any other error keeps its traceback
        with user_errors():
            raise RuntimeError("an internal invariant")
