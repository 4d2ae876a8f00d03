from typer import Typer
from typer.testing import CliRunner

from mirage.cli.transfer import transfer_cmd, transfer_types_cmd


def test_transfer_types_refuses_inputs_with_their_own_loop_before_any_work(tmp_path):
    app = Typer()
    app.command("transfer")(transfer_cmd)
    app.command("transfer-types")(transfer_types_cmd)
    for kind in ("patch", "generator"):
        res = CliRunner().invoke(app, ["transfer-types", "--input", kind, "--model", "demo:/nonexistent",
                                       "--out", str(tmp_path / kind), "-q"])
        assert res.exit_code == 2 and f"--input {kind}" in res.output and "features" in res.output, res.output
        assert not (tmp_path / kind).exists()  # refused before the run directory (and the model)
