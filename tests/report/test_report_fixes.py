"""Report pieces that misled a first reader (issue 20): squashed loss curves, the attack's metric, empty columns."""

from __future__ import annotations

from mirage.report.plots import history_figure


def test_history_gives_each_source_its_own_step_axis():
    # a 100-step inversion beside a 5-step universal run: the short curve must span its own panel, not 5% of it
    histories = {"universal-noise": [{"step": i + 1, "loss": 2.0 - 0.1 * i} for i in range(5)],
                 "inversion-question-from-blank": [{"step": i + 1, "loss": 1.0 - 0.001 * i} for i in range(100)]}
    fig = history_figure(histories)
    loss_axes = [ax for ax in fig.axes if "loss" in ax.get_title()]
    assert len(loss_axes) == 2
    short = next(ax for ax in loss_axes if ax.get_title().startswith("universal-noise"))
    assert short.get_xlim()[1] < 10, short.get_xlim()
