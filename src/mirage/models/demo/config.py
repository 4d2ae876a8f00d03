"""Configuration of the demo VLM: four transformers vision encoders, an SVA-style aggregator, a Llama LM."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

CLIP_MEAN, CLIP_STD = (0.48145466, 0.4578275, 0.40821073), (0.26862954, 0.26130258, 0.27577711)
IMAGENET_MEAN, IMAGENET_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
HALF = (0.5, 0.5, 0.5)


def _encoders() -> dict[str, dict]:
    # Each encoder: the transformers class it is built from, its config, its input size and normalisation.
    # Like Cambrian-1's, the ConvNeXt sees the full resolution and yields 16x the tokens of the others.
    return {
        "clip": dict(arch="clip", image_size=112, mean=CLIP_MEAN, std=CLIP_STD,
                     config=dict(hidden_size=192, intermediate_size=768, num_hidden_layers=2,
                                 num_attention_heads=3, image_size=112, patch_size=14)),
        "siglip": dict(arch="siglip", image_size=96, mean=HALF, std=HALF,
                       config=dict(hidden_size=128, intermediate_size=512, num_hidden_layers=2,
                                   num_attention_heads=2, image_size=96, patch_size=12, vision_use_head=False)),
        "dino": dict(arch="dinov2", image_size=112, mean=IMAGENET_MEAN, std=IMAGENET_STD,
                     config=dict(hidden_size=192, mlp_ratio=4, num_hidden_layers=2, num_attention_heads=3,
                                 image_size=112, patch_size=14)),
        "convnext": dict(arch="convnext", image_size=224, mean=CLIP_MEAN, std=CLIP_STD,
                         config=dict(patch_size=7, num_stages=1, hidden_sizes=[64], depths=[2], image_size=224)),
    }


def _lm() -> dict:
    return dict(hidden_size=256, intermediate_size=512, num_hidden_layers=4, num_attention_heads=4,
                num_key_value_heads=2, max_position_embeddings=256, rms_norm_eps=1e-5, tie_word_embeddings=True,
                rope_theta=10000.0)


@dataclass
class DemoConfig:
    """All sizes of the demo model; `to_dict`/`from_dict` round-trip through config.json."""

    encoders: dict[str, dict] = field(default_factory=_encoders)
    lm: dict = field(default_factory=_lm)
    vocab_size: int = 128
    grid: int = 8  # the aggregator's query grid: grid*grid image tokens
    sva_dim: int = 128
    sva_layers: int = 2
    sva_heads: int = 4

    def to_dict(self) -> dict:
        return {"model_type": "mirage-demo", **asdict(self)}

    @classmethod
    def from_dict(cls, d: dict) -> "DemoConfig":
        d = {k: v for k, v in d.items() if k != "model_type"}
        return cls(**d)
