"""A study in two prompt variants (MMMU: its official runner's and lmms-eval's): the conditions again in the second
prompt, in their own run directory, and every measure's difference with a paired interval, from their rows."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import pytest

from mirage.blind import run_difference
from mirage.experiments import study as study_module
from mirage.runs import read_rows

MMMU = Path("/work/shared/fixtures/mmmu")


@pytest.mark.skipif(not MMMU.is_dir(), reason="MMMU fixture not available")
def test_study_compares_two_prompts(tmp_path, tiny_dir, monkeypatch):
    parts = study_module.study_parts
    # the conditions only, five of them: the comparison is what is tested here (test_study.py runs every part)
    few = "real,none,image-only,wrong,both"
    monkeypatch.setattr(study_module, "study_parts", lambda *a, **k: [
        replace(p, settings={**p.settings, "conditions": few}) for p in parts(*a, **k) if p.experiment == "conditions"])
    out = tmp_path / "study"
    result = study_module.run_study(f"demo:{tiny_dir}", "mmmu", out=out, limit=2, device="cpu", quiet=True,
                                    options={"mmmu": {"data_dir": str(MMMU)}}, prompts="official,lmms-eval")
    summary = json.loads((out / "summary.json").read_text())
    assert summary["prompts"]["variants"] == ["official", "lmms-eval"]
    first, second = out / "mmmu", out / "mmmu.prompt-lmms-eval"
    assert json.loads((first / "config.json").read_text())["prompt"] == "official"
    assert json.loads((second / "config.json").read_text())["prompt"] == "lmms-eval"
    rows_a, rows_b = read_rows(first / "results.jsonl"), read_rows(second / "results.jsonl")
    assert {r["source"] for r in rows_b} == {r["source"] for r in rows_a}
    assert summary["prompts"]["difference"]["mmmu"] == run_difference(rows_a, rows_b)
    measures = summary["prompts"]["difference"]["mmmu"]["measures"]
    assert {"S_v", "S_wv", "MG", "image_only", "text_adds", "pair_beyond", "both"} <= set(measures)
    assert result.prompts == summary["prompts"]
    with pytest.raises(ValueError, match="mmmu has no 'model' prompt|no published prompt family"):
        study_module.run_study(f"demo:{tiny_dir}", "mmmu", out=tmp_path / "s2", limit=4, device="cpu", quiet=True,
                               options={"mmmu": {"data_dir": str(MMMU)}}, prompts="official,model")
