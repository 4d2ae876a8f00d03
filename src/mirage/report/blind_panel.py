"""The image-free panel: MMStar's S_v, S_wv, S_t, multi-modal gain and leakage, beside the trained-blind accuracies
(TsT) and their gaps over zero-shot blind, read off `mirage.blind` of the run's
rows (as summary.json's `blind`), overall and per question type."""

from __future__ import annotations

from dataclasses import dataclass

from ..blind import MEASURES, blind_measures

LABELS = {"S_v": "with the image", "S_wv": "no image at all", "S_t": "base LLM, text only",
          "MG": "multi-modal gain", "ML": "multi-modal leakage", "TsT_lm": "LM trained blind (LoRA, cross-fitted)",
          "TsT_rf": "random forest on the text (cross-fitted)", "gap_lm": "TsT_lm - the LM zero-shot",
          "gap_rf": "TsT_rf - zero-shot blind"}


@dataclass
class BlindPanel:
    """The measures present, the overall block and one block per question type ({measure: {n, value, ci95}})."""

    measures: list[str]
    overall: dict
    by_type: dict[str, dict]
    intervals: dict
    labels: dict


def blind_panel(rows: list[dict]) -> BlindPanel | None:
    """The panel for a run's rows; None when the run has no image-free rows (none, text-model, tst-lm, tst-rf)."""
    blind = blind_measures(rows)
    if blind is None:
        return None
    present = [m for m in MEASURES if m in blind or any(m in b for b in blind["by_type"].values())]
    return BlindPanel(present, {m: blind[m] for m in present if m in blind}, blind["by_type"], blind["intervals"],
                      LABELS)
