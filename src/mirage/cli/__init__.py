"""The `mirage` command line: a thin typer layer over the library. One module per command group; this package
builds the app and registers them (the command modules never import it)."""

from __future__ import annotations

import typer

from . import eval, invert, optimize, report, saliency, study, train_demo, transfer

app = typer.Typer(add_completion=False, no_args_is_help=True,
                  help="How much of a vision-language model's benchmark score needs a real image?")

app.command("eval")(eval.eval_cmd)
app.command("optimize")(optimize.optimize_cmd)
app.command("study")(study.study_cmd)
app.command("train-demo")(train_demo.train_demo_cmd)
app.command("report")(report.report_cmd)
app.command("saliency")(saliency.saliency_cmd)
app.command("invert")(invert.invert_cmd)
app.command("transfer")(transfer.transfer_cmd)
app.command("transfer-types")(transfer.transfer_types_cmd)


def main() -> None:
    try:
        app()
    except KeyboardInterrupt:  # Ctrl-C before a command's own handler (while starting up): no traceback
        raise SystemExit(130) from None


__all__ = ["app", "main"]
