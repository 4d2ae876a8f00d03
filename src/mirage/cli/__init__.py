"""The `mirage` command line: a thin typer layer over the library. One module per command group; this package
builds the app and registers them (the command modules never import it)."""

from __future__ import annotations

import sys
from typing import Optional

import typer
from typer import rich_utils
from typer.core import TyperArgument, TyperOption

from . import (benchmarks, curate, eval, invert, optimize, report, saliency, show, study, train_demo,
               train_demo_text, transfer, tst)

# typer 0.29's help internals (pyproject pins it); a typer without them (another install beside mirage's) keeps its
# own help rather than failing at import
_value_type = getattr(TyperOption, "display_type_rich", None)


def _flag_type(self, ctx):
    """A flag takes no value: typer 0.29 labels every flag, --help included, `<bool>` in the help's type column."""
    return None if self.is_flag else _value_type(self, ctx)


def _usage_name(self) -> str:
    """RUN_DIR as the docstrings write it (typer 0.29 writes a required argument `{RUN_DIR}`)."""
    name = self.display_name_raw
    return (name if self.required else f"[{name}]") + ("..." if self.nargs != 1 else "")


if _value_type is not None:
    TyperOption.display_type_rich = _flag_type
if getattr(rich_utils, "MAX_WIDTH", 0) is None and not sys.stdout.isatty():  # help in a pipe or a log: as wide as
    rich_utils.MAX_WIDTH = 130  # the tables
if hasattr(TyperArgument, "_usage_display_name"):
    TyperArgument._usage_display_name = _usage_name
app = typer.Typer(add_completion=False, no_args_is_help=True,
                  help="How much of a vision-language model's benchmark score needs a real image?")


@app.callback()
def _start(threads: Optional[int] = typer.Option(None, "--threads", min=1, envvar="MIRAGE_THREADS", help=(
        "CPU threads for torch (default: the cores this process may use and other processes leave idle at "
        "start-up, shared among torchrun ranks; OMP_NUM_THREADS, when set, is kept)."))) -> None:
    from ..threads import apply_threads

    apply_threads(threads)


app.command("eval")(eval.eval_cmd)
app.command("benchmarks")(benchmarks.benchmarks_cmd)
app.command("optimize")(optimize.optimize_cmd)
app.command("study")(study.study_cmd)
app.command("train-demo")(train_demo.train_demo_cmd)
app.command("train-demo-text")(train_demo_text.train_demo_text_cmd)
app.command("tst")(tst.tst_cmd)
app.command("curate")(curate.curate_cmd)
app.command("report")(report.report_cmd)
app.command("show")(show.show_cmd)
app.command("compare")(show.compare_cmd)
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
