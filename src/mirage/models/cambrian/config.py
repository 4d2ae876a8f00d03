"""Cambrian-1 configuration: the fields of the official config.json that shape the model, and its vision towers.

Verified against cambrian-mllm/cambrian (commit 539ffc3): `cambrian/model/cambrian_arch.py` (which config fields
build the SVA connector and the sampler layers inside the LM), `scripts/cambrian/finetune_cambrian_8b.sh` (the 8B's
values: vision_hidden_size 1024, connector_depth 3, image_position 91, 10 sampler layers from LM layer 0 every 3rd),
`cambrian/model/multimodal_encoder/{siglip,clip,dino,clip_convnext}_encoder.py` and `base_encoder.py` (tower names,
resolutions, feature selection, pad colours) and the hub's `nyu-visionx/cambrian-8b/config.json` (Llama-3-8B sizes,
connector_only false, image_token_len 576, query_num_list [576], token lengths [576, 576, 576, 9216]).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field, fields

from ...registry import did_you_mean
from ..square import pad_colour

CLIP_MEAN, CLIP_STD = (0.48145466, 0.4578275, 0.40821073), (0.26862954, 0.26130258, 0.27577711)
IMAGENET_MEAN, IMAGENET_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
HALF = (0.5, 0.5, 0.5)
SVA_HEADS = 16  # hard-coded in the official VisionCrossAttentionLayer


@dataclass
class TowerConfig:
    """One vision tower: its official name, mirage name, transformers architecture and config, input and output."""

    official: str  # as in mm_vision_tower_aux_list
    name: str  # mirage's encoder name
    arch: str  # clip | siglip | dinov2 | convnext
    image_size: int
    token_len: int  # tokens after the tower's interpolation (mm_vision_tower_aux_token_len_list)
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    pad: tuple[int, int, int]  # expand2square's colour (SigLIP and ConvNeXt pad with CLIP's mean: ProcessorWrapper)
    config: dict = field(default_factory=dict)  # kwargs of the transformers config class
    select_layer: int | None = None  # hidden_states index (CLIP: mm_vision_select_layer -2); None: last_hidden_state
    source: str | None = None  # hub id of the real weights (they are not part of the Cambrian checkpoint)

    def __post_init__(self) -> None:
        self.mean, self.std, self.pad = tuple(self.mean), tuple(self.std), tuple(self.pad)


def _siglip(token_len: int = 576) -> TowerConfig:
    return TowerConfig("siglip/CLIP-ViT-SO400M-14-384", "siglip", "siglip", 384, token_len, HALF, HALF,
                       pad_colour(CLIP_MEAN), source="google/siglip-so400m-patch14-384",
                       config=dict(hidden_size=1152, intermediate_size=4304, num_hidden_layers=27,
                                   num_attention_heads=16, image_size=384, patch_size=14,
                                   hidden_act="gelu", layer_norm_eps=1e-6, vision_use_head=False))


def _clip(token_len: int = 576) -> TowerConfig:
    return TowerConfig("openai/clip-vit-large-patch14-336", "clip", "clip", 336, token_len, CLIP_MEAN, CLIP_STD,
                       pad_colour(CLIP_MEAN), select_layer=-2, source="openai/clip-vit-large-patch14-336",
                       config=dict(hidden_size=1024, intermediate_size=4096, num_hidden_layers=24,
                                   num_attention_heads=16, image_size=336, patch_size=14, hidden_act="quick_gelu",
                                   layer_norm_eps=1e-5, projection_dim=768))


def _dino(token_len: int = 576) -> TowerConfig:
    # "-res378": the giant model (trained at 518) run at 378 px, its position embeddings interpolated
    return TowerConfig("facebook/dinov2-giant-res378", "dino", "dinov2", 378, token_len, IMAGENET_MEAN, IMAGENET_STD,
                       pad_colour(IMAGENET_MEAN), source="facebook/dinov2-giant",
                       config=dict(hidden_size=1536, num_hidden_layers=40, num_attention_heads=24, mlp_ratio=4,
                                   use_swiglu_ffn=True, image_size=518, patch_size=14, layer_norm_eps=1e-6))


def _convnext(token_len: int = 9216) -> TowerConfig:
    # open_clip's timm trunk of CLIP-convnext_xxlarge at 1024 px, all four stages' maps (multi-stage) -> 96 x 96
    return TowerConfig("clip-convnext-XXL-multi-stage", "convnext", "convnext", 1024, token_len, CLIP_MEAN, CLIP_STD,
                       pad_colour(CLIP_MEAN), source="laion/CLIP-convnext_xxlarge-laion2B-s34B-b82K-augreg-soup",
                       config=dict(num_channels=3, patch_size=4, num_stages=4, hidden_sizes=[384, 768, 1536, 3072],
                                   depths=[3, 4, 30, 3], layer_norm_eps=1e-5, image_size=1024))


KNOWN_TOWERS = {t().official: t for t in (_siglip, _clip, _dino, _convnext)}


def _llama_3_8b() -> dict:
    return dict(vocab_size=128256, hidden_size=4096, intermediate_size=14336, num_hidden_layers=32,
                num_attention_heads=32, num_key_value_heads=8, max_position_embeddings=8192, rms_norm_eps=1e-5,
                rope_theta=500000.0, bos_token_id=128000, eos_token_id=128001, tie_word_embeddings=False,
                hidden_act="silu")


# LlamaConfig fields read from an official config.json (they sit at its top level, beside the multimodal ones)
LM_FIELDS = ("vocab_size", "hidden_size", "intermediate_size", "num_hidden_layers", "num_attention_heads",
             "num_key_value_heads", "max_position_embeddings", "rms_norm_eps", "rope_theta", "rope_scaling",
             "bos_token_id", "eos_token_id", "pad_token_id", "tie_word_embeddings", "hidden_act", "attention_bias",
             "mlp_bias", "head_dim")
LLAMA_TYPES = ("cambrian_llama", "llava_llama", "llama")


@dataclass
class CambrianConfig:
    """A Cambrian-1 model with the SVA connector (`mm_projector_type: sva`) on a Llama LM; defaults are the 8B's."""

    towers: list[TowerConfig] = field(default_factory=lambda: [_siglip(), _clip(), _dino(), _convnext()])
    lm: dict = field(default_factory=_llama_3_8b)
    vision_hidden_size: int = 1024
    image_token_len: int = 576  # final token grid (24 x 24), one newline token per row is appended
    query_num_list: list[int] = field(default_factory=lambda: [576])  # one SVA query group per entry
    connector_depth: int = 3
    connector_only: bool = False  # False: vision sampler layers re-aggregate inside the LM
    num_of_vision_sampler_layers: int = 10
    start_of_vision_sampler_layers: int = 0
    stride_of_vision_sampler_layers: int = 3
    image_position: int = 91  # where the template puts the image (checked, not relied on)
    conv_mode: str = "llama_3"  # the chat template (cambrian-8b's; the only one implemented)

    def __post_init__(self) -> None:
        self.towers = [t if isinstance(t, TowerConfig) else TowerConfig(**t) for t in self.towers]
        self.check()

    @property
    def side(self) -> int:
        return math.isqrt(self.image_token_len)

    def sampler_layer_indices(self) -> list[int]:
        """LM layers after which a vision sampler layer runs (empty when connector_only)."""
        if self.connector_only:
            return []
        return [self.start_of_vision_sampler_layers + k * self.stride_of_vision_sampler_layers
                for k in range(self.num_of_vision_sampler_layers)]

    def check(self) -> None:
        """Refuse shapes the official code would fail on (or silently mis-slice)."""
        names = [t.name for t in self.towers]
        if len(set(names)) != len(names):
            raise ValueError(f"Cambrian config: tower names repeat: {names}")
        sides = [math.isqrt(q) for q in self.query_num_list] + [self.side]
        for q, s in zip([*self.query_num_list, self.image_token_len], sides):
            if s * s != q:
                raise ValueError(f"Cambrian config: {q} queries/tokens is not a square grid")
        for t in self.towers:
            g = math.isqrt(t.token_len)
            if g * g != t.token_len or any(g % s for s in sides):
                raise ValueError(f"Cambrian config: tower {t.official!r} has {t.token_len} tokens, not a square grid "
                                 f"divisible by every query grid side {sides}")
        if self.conv_mode != "llama_3":
            raise ValueError(f"Cambrian config: chat template {self.conv_mode!r} is not implemented (only llama_3, "
                             "cambrian-8b's; cambrian-13b uses vicuna_v1, cambrian-34b chatml_direct)")
        if self.vision_hidden_size % SVA_HEADS:
            raise ValueError(f"Cambrian config: vision_hidden_size {self.vision_hidden_size} is not divisible by the "
                             f"SVA's {SVA_HEADS} heads")
        bad = [i for i in self.sampler_layer_indices() if not 0 <= i < self.lm["num_hidden_layers"]]
        if bad:
            raise ValueError(f"Cambrian config: vision sampler layers after LM layers {bad}, but the LM has "
                             f"{self.lm['num_hidden_layers']} layers")

    # --- the official config.json ----------------------------------------------------------------
    def to_official(self) -> dict:
        """An official-style config.json (plus a `mirage` block holding the towers' exact specs)."""
        lm = {k: v for k, v in self.lm.items() if v is not None}
        return {"architectures": ["CambrianLlamaForCausalLM"], "model_type": "cambrian_llama", **lm,
                "mm_projector_type": "sva", "mm_vision_tower_aux_list": [t.official for t in self.towers],
                "mm_vision_tower_aux_token_len_list": [t.token_len for t in self.towers],
                "vision_hidden_size": self.vision_hidden_size, "image_token_len": self.image_token_len,
                "num_query_group": len(self.query_num_list), "query_num_list": list(self.query_num_list),
                "connector_depth": self.connector_depth, "connector_only": self.connector_only,
                "num_of_vision_sampler_layers": self.num_of_vision_sampler_layers,
                "start_of_vision_sampler_layers": self.start_of_vision_sampler_layers,
                "stride_of_vision_sampler_layers": self.stride_of_vision_sampler_layers,
                "image_position": self.image_position, "mm_vision_select_layer": -2,
                "mm_vision_select_feature": "patch", "image_aspect_ratio": "pad", "mm_use_im_start_end": False,
                "mm_use_im_patch_token": False, "mm_patch_merge_type": "flat",
                "mirage": {"towers": [asdict(t) for t in self.towers], "conv_mode": self.conv_mode}}

    @classmethod
    def from_official(cls, d: dict, where: str = "config.json") -> "CambrianConfig":
        """Read an official Cambrian-1 config.json; refuses what this backend does not implement, naming it."""
        kind = d.get("model_type")
        if kind not in LLAMA_TYPES:
            raise ValueError(f"{where}: model_type {kind!r}: only Llama-based Cambrian-1 models are implemented "
                             f"(allowed: {', '.join(LLAMA_TYPES)}); cambrian-phi3-3b, -13b (vicuna) and -34b (Yi) "
                             "need their own LM and chat template")
        unsupported = {"mm_projector_type": "sva", "image_aspect_ratio": "pad", "mm_use_im_start_end": False,
                       "mm_vision_select_feature": "patch", "mm_patch_merge_type": "flat"}
        for key, want in unsupported.items():
            if d.get(key, want) != want:
                raise ValueError(f"{where}: {key} {d[key]!r} is not implemented (only {want!r})")
        if d.get("num_query_group", len(d.get("query_num_list", [1]))) != len(d.get("query_num_list", [1])):
            raise ValueError(f"{where}: num_query_group {d['num_query_group']} != len(query_num_list)")
        names, lens = d["mm_vision_tower_aux_list"], d["mm_vision_tower_aux_token_len_list"]
        saved = {t["official"]: t for t in d.get("mirage", {}).get("towers", [])}
        towers = []
        for name, n in zip(names, lens):
            if name in saved:
                towers.append(TowerConfig(**{**saved[name], "token_len": n}))
            elif name in KNOWN_TOWERS:
                towers.append(KNOWN_TOWERS[name](n))
            else:
                raise ValueError(f"{where}: {did_you_mean('vision tower', name, list(KNOWN_TOWERS))}")
        conv_mode = d.get("mirage", {}).get("conv_mode")
        if conv_mode is None:  # the hub's config.json does not say; the LM does: Llama-3's vocabulary is 128256
            if d.get("vocab_size") != 128256:
                raise ValueError(f"{where}: an LM with vocab_size {d.get('vocab_size')} is not Llama-3: only "
                                 "cambrian-8b's llama_3 chat template is implemented (cambrian-13b uses vicuna_v1, "
                                 "cambrian-34b chatml_direct)")
            conv_mode = "llama_3"
        lm = {k: d[k] for k in LM_FIELDS if k in d}
        if "rope_theta" not in lm and isinstance(d.get("rope_parameters"), dict):
            lm["rope_theta"] = d["rope_parameters"].get("rope_theta")
        own = {f.name for f in fields(cls)} - {"towers", "lm", "conv_mode"}
        return cls(towers=towers, lm=lm, conv_mode=conv_mode, **{k: d[k] for k in own if k in d})


def config_8b() -> CambrianConfig:
    """nyu-visionx/cambrian-8b: Llama-3-8B, SigLIP SO400M/14@384, CLIP ViT-L/14@336, DINOv2-g/14@378,
    ConvNeXt-XXL@1024 (multi-stage, 9216 tokens), SVA to 24 x 24 tokens, 10 sampler layers in the LM."""
    return CambrianConfig()


def tiny_config(vocab_size: int = 128, image_position: int = 0) -> CambrianConfig:
    """The 8B's structure at toy sizes, for tests: 4 towers (ConvNeXt with 16x the tokens, 4 x 4 windows),
    interpolated SigLIP/DINOv2 grids (DINOv2's position embeddings interpolated from 9 x 9 to 7 x 7, as the 8B's
    from 37 x 37 to 27 x 27), a 2-layer LM with a sampler layer after each layer."""
    towers = [
        TowerConfig("siglip/CLIP-ViT-SO400M-14-384", "siglip", "siglip", 56, 16, HALF, HALF, pad_colour(CLIP_MEAN),
                    config=dict(hidden_size=40, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2,
                                image_size=56, patch_size=8, vision_use_head=False)),
        TowerConfig("openai/clip-vit-large-patch14-336", "clip", "clip", 32, 16, CLIP_MEAN, CLIP_STD,
                    pad_colour(CLIP_MEAN), select_layer=-2,
                    config=dict(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2,
                                image_size=32, patch_size=8)),
        TowerConfig("facebook/dinov2-giant-res378", "dino", "dinov2", 42, 16, IMAGENET_MEAN, IMAGENET_STD,
                    pad_colour(IMAGENET_MEAN),
                    config=dict(hidden_size=48, num_hidden_layers=2, num_attention_heads=2, mlp_ratio=2,
                                use_swiglu_ffn=True, image_size=54, patch_size=6)),  # trained at 54, run at 42
        TowerConfig("clip-convnext-XXL-multi-stage", "convnext", "convnext", 64, 256, CLIP_MEAN, CLIP_STD,
                    pad_colour(CLIP_MEAN),
                    config=dict(num_channels=3, patch_size=4, num_stages=2, hidden_sizes=[8, 16], depths=[1, 1],
                                layer_norm_eps=1e-5, image_size=64)),
    ]
    lm = dict(vocab_size=vocab_size, hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4,
              num_key_value_heads=2, max_position_embeddings=512, rms_norm_eps=1e-5, rope_theta=500000.0,
              tie_word_embeddings=False, hidden_act="silu")
    return CambrianConfig(towers=towers, lm=lm, vision_hidden_size=32, image_token_len=16, query_num_list=[16],
                          connector_depth=2, connector_only=False, num_of_vision_sampler_layers=2,
                          start_of_vision_sampler_layers=0, stride_of_vision_sampler_layers=1,
                          image_position=image_position)
