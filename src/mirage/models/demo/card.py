"""The demo model's card: how it was trained and how it scores, written beside its weights."""

from __future__ import annotations

import json
from pathlib import Path


def write_card(model_dir: str | Path, stages: list[dict], log: list[dict], summary: dict) -> Path:
    """MODEL_CARD.md, training.json and metrics.json in `model_dir`.

    `stages`: each training command that led to these weights ({command, device, seconds, steps}), oldest first;
    `log`: the last stage's validation records; `summary`: a test-split evaluation.
    """
    model_dir = Path(model_dir)
    (model_dir / "metrics.json").write_text(json.dumps(summary, indent=2))
    (model_dir / "training.json").write_text(json.dumps({"stages": stages}, indent=2))
    weights_mb = (model_dir / "model.safetensors").stat().st_size / 1e6
    history = "\n".join(f"{i + 1}. `{st['command']}` on {st['device']}: {st['steps']} steps, {st['seconds']:.0f} s"
                        for i, st in enumerate(stages))
    total = sum(st["seconds"] for st in stages)
    types = sorted({t for by in summary["by_type"].values() for t in by})
    rows = "\n".join(
        f"| {src} | {summary['n'][src]} | {summary['accuracy'][src]:.3f} | "
        f"[{summary['ci95'][src][0]:.3f}, {summary['ci95'][src][1]:.3f}] | "
        + " | ".join(f"{summary['by_type'][src].get(t, float('nan')):.3f}" for t in types) + " |"
        for src in summary["n"])
    curve = "\n".join(f"| {r['step']} | {r['seconds']} | {r['acc_real']:.3f} | {r['acc_blank']:.3f} | "
                      f"{r['lm_loss']:.4f} | {r['dense_loss']:.4f} |" for r in log)
    text = f"""# mirage demo VLM

A Cambrian-style vision-language model trained by mirage on ShapesQA: four transformers vision encoders
(`clip`, `siglip`, `dino`, `convnext`, each with its own input size and normalisation; the ConvNeXt gives 16x the
tokens of the others), an SVA-style aggregator (8x8 queries, each attending to its window of every encoder), and a
transformers `LlamaForCausalLM` reading 64 image tokens at the `<image>` placeholder of a chat prompt. It answers
multiple-choice questions through the next-token logits of the answer letters. Its base LM (the same LM trained on
text alone, for MMStar's S_t: `mirage eval --text-model demo`) is in `text-lm/`, with its own card.

## Training
{history}

Total training wall time {total:.0f} s. Weights: `model.safetensors`, {weights_mb:.1f} MB (stored in float16, loaded
and computed in float32).

Recipe (`mirage train-demo`, three phases): (1) text: the LM alone learns to bind an answer to its letter from
drills ("pick red A . blue B . red ..." -> B) and learns the text-prior facts, with no image in the prompt; (2) vision:
the encoders and aggregator learn dense heads on each image token (shape, colour and size of the object under it,
scored by cosine similarity with the LM's embeddings of those words, plus the token's grid row and column) while
the LM goes on with text; (3) joint: 45% open-form questions (target: the answer word), 40% multiple choice (target:
the letter), 15% drills, with the image. fp32 with TF32 matmuls, AdamW (lr 5e-4, weight decay 0.05, betas
0.9/0.98), warm-up, cosine decay over the joint phase, gradient clipping at 1.0. Scenes are drawn fresh every step
from the ShapesQA train stream. A continuation stage (`--init DIR`) starts from DIR's weights with the joint phase
only; it may oversample question types (`--type-weights`) and add training-only open questions on one object's row
or column (`--aux-fraction`). Each stage's `--init` is the model the stage before it wrote.

Validation curve of the last stage (first questions of the val split, through the differentiable preprocessing):

| step | seconds | MC accuracy, real | MC accuracy, blank | LM loss | dense loss |
| --- | --- | --- | --- | --- | --- |
{curve}

## Evaluation: ShapesQA test split, real processor path (PIL, uint8)

| source | n | accuracy | 95% CI | {' | '.join(types)} |
| --- | --- | --- | --- | {' | '.join('---' for _ in types)} |
{rows}

`prior` questions are answerable from the text alone; with a blank image the other types should fall to chance (0.25).
"""
    path = model_dir / "MODEL_CARD.md"
    path.write_text(text)
    return path


def write_text_card(model_dir: str | Path, summary: dict) -> Path:
    """MODEL_CARD.md of the demo's base LM (`mirage train-demo-text`) from its training.json and `summary`, a
    `stats.summarize` of its `text-model` rows on the ShapesQA test split."""
    model_dir = Path(model_dir)
    t = json.loads((model_dir / "training.json").read_text())
    src = "text-model"
    types = sorted(summary["by_type"][src])
    lo, hi = summary["ci95"][src]
    text = f"""# mirage demo base LM (text only)

The demo VLM's language model alone: the same transformers `LlamaForCausalLM` shape and the same word-level
tokenizer and chat template as the demo (`../config.json`, `../tokenizer.json`), trained on the text phase of
`mirage train-demo` only: letter drills ("pick red A . blue B . red ..." -> B) and the text-prior facts, every
prompt a text-only chat turn, no image ever. It is the demo's LM as it was before vision joined: the demo itself was
trained jointly and kept no checkpoint of that stage, so `mirage train-demo-text` retrains it with the same recipe
and data stream ({t['steps']} steps of batch {t['batch_size']}, lr {t['lr']}, seed {t['seed']}, {t['device']},
{t['seconds']:.0f} s). It has never seen a ShapesQA question about colour, shape, count, size or position: it is
MMStar's base LLM for the demo (`mirage eval --text-model demo`, S_t), not a blind baseline trained on the benchmark.
Weights: `model.safetensors`, {(model_dir / 'model.safetensors').stat().st_size / 1e6:.1f} MB (float16, loaded in
float32); a plain transformers directory, so `--text-model hf:DIR` loads it too.

## Evaluation: ShapesQA test split, the same prompts as the VLM, as text

| n | accuracy | 95% CI (Wilson) | {' | '.join(types)} |
| --- | --- | --- | {' | '.join('---' for _ in types)} |
| {summary['n'][src]} | {summary['accuracy'][src]:.3f} | [{lo:.3f}, {hi:.3f}] | {' | '.join(f"{summary['by_type'][src][x]:.3f}" for x in types)} |

`prior` questions are the text-prior facts it was trained on; the visual types have nothing to go on without the
image (chance 0.25).
"""
    path = model_dir / "MODEL_CARD.md"
    path.write_text(text)
    return path
