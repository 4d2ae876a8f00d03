import typer
from typer.testing import CliRunner

from mirage.cli.saliency import saliency_cmd


def test_cli_writes_a_run_and_refuses_unknown_methods(shapes_cli, tmp_path):
    model_dir = shapes_cli
    app = typer.Typer()
    app.command("saliency")(saliency_cmd)
    app.command("other")(lambda: None)  # a second command, so typer keeps the command name
    runner = CliRunner()
    out = tmp_path / "run"
    res = runner.invoke(app, ["saliency", "--model", f"demo:{model_dir}", "--limit", "2", "--out", str(out), "-q"])
    assert res.exit_code == 0, res.output
    assert "saliency-gradient" in res.output and len((out / "saliency.jsonl").read_text().splitlines()) == 2
    bad = runner.invoke(app, ["saliency", "--method", "gradiant", "--out", str(tmp_path / "bad")])
    assert bad.exit_code == 2 and "did you mean 'gradient'" in bad.output
    assert not (tmp_path / "bad").exists()
