"""What a new user types, run as typed (issue 20): values are honoured or refused, runs bounded by their flags."""

import json

from typer.testing import CliRunner

from mirage.cli import app

runner = CliRunner()


def run(*args):
    return runner.invoke(app, [str(a) for a in args])


def rows(out):
    return [json.loads(x) for x in (out / "results.jsonl").read_text().splitlines()]


def test_lr_zero_is_honoured_not_replaced_by_the_default(shapes_cli, tmp_path):
    # Adam at lr 0 never moves the input, so 1 step and 3 steps end on the same probabilities.
    base = ["optimize", "--model", f"demo:{shapes_cli}", "--input", "features", "--limit", "2", "--early-stop", "0",
            "--lr", "0", "-q"]
    one, three = tmp_path / "one", tmp_path / "three"
    assert run(*base, "--steps", "1", "--out", one).exit_code == 0
    assert run(*base, "--steps", "3", "--out", three).exit_code == 0
    assert [r["probs"] for r in rows(one)] == [r["probs"] for r in rows(three)]
    assert json.loads((one / "config.json").read_text())["lr"] == 0.0


def test_help_imports_neither_torch_nor_any_backend():
    # `mirage --help` took 6 s importing torch and every backend; help must only need typer.
    import subprocess
    import sys
    code = ("import sys; from typer.testing import CliRunner; from mirage.cli import app\n"
            "for cmd in ([], ['eval'], ['optimize'], ['study'], ['report'], ['train-demo'], ['saliency'], ['invert'],"
            " ['transfer'], ['transfer-types']):\n"
            "    res = CliRunner().invoke(app, cmd + ['--help'])\n"
            "    assert res.exit_code == 0, (cmd, res.output)\n"
            "heavy = sorted(m for m in ('torch', 'transformers', 'numpy', 'scipy') if m in sys.modules)\n"
            "assert not heavy, heavy\n")
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr
