"""The question-conditioned generator: a tiny diffusers UNet2DConditionModel cross-attending to the question's
embeddings from the VLM's own LM input embedding table, sampled with a few DDIM steps."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ...errors import UsageError
from ..base import Input
from ...models.vlm import VLM, Visual
from .sampler import Trajectory, ddim_step, gaussian_log_prob


@dataclass
class GeneratorConfig:
    """Sizes of the generator: images of `resolution` (upsampled to the model's input), `steps` DDIM steps."""

    resolution: int = 32
    channels: tuple[int, ...] = (32, 64)
    cond_dim: int = 64
    text_layers: int = 1  # transformer layers over the question's word embeddings
    steps: int = 6
    eta: float = 1.0  # > 0: every step is a Gaussian policy
    max_text: int = 128

    def to_dict(self) -> dict:
        return asdict(self)


def question_embeddings(model: VLM, prompts: Sequence[str], max_len: int = 128) -> tuple[Tensor, Tensor]:
    """The prompts' tokens through the VLM's LM input embeddings (frozen): [B, L, D] float and mask [B, L]."""
    tok = getattr(model, "tokenizer", None)
    if tok is None or not hasattr(model, "embed"):
        raise UsageError(f"--input generator: {type(model).__name__} has no tokenizer and `embed`: the generator reads the question "
                         "through the LM's input embeddings")
    ids = [tok(p, add_special_tokens=False).input_ids[:max_len] or [0] for p in prompts]
    n = max(map(len, ids))
    padded = torch.tensor([s + [0] * (n - len(s)) for s in ids], device=model.device)
    mask = torch.tensor([[1] * len(s) + [0] * (n - len(s)) for s in ids], device=model.device)
    with torch.no_grad():
        return model.embed(padded).float(), mask


class QuestionGenerator(nn.Module):
    """Text conditioner (projection + transformer over the question's word embeddings) and a UNet predicting the
    clean image; `sample` runs DDIM with eta > 0 and records each step's log-probability."""

    def __init__(self, cfg: GeneratorConfig, text_dim: int):
        super().__init__()
        from diffusers import DDIMScheduler, UNet2DConditionModel

        self.cfg = cfg
        self.text_in = nn.Sequential(nn.Linear(text_dim, cfg.cond_dim), nn.LayerNorm(cfg.cond_dim))
        self.pos = nn.Parameter(torch.randn(cfg.max_text, cfg.cond_dim) * 0.02)
        layer = nn.TransformerEncoderLayer(cfg.cond_dim, max(1, cfg.cond_dim // 16), 2 * cfg.cond_dim, dropout=0.0,
                                           batch_first=True, norm_first=True)
        self.text = (nn.TransformerEncoder(layer, cfg.text_layers, enable_nested_tensor=False)
                     if cfg.text_layers else None)
        ch = tuple(cfg.channels)
        self.unet = UNet2DConditionModel(
            sample_size=cfg.resolution, in_channels=3, out_channels=3, layers_per_block=1, block_out_channels=ch,
            down_block_types=("DownBlock2D",) + ("CrossAttnDownBlock2D",) * (len(ch) - 1),
            up_block_types=("CrossAttnUpBlock2D",) * (len(ch) - 1) + ("UpBlock2D",),
            cross_attention_dim=cfg.cond_dim, attention_head_dim=8, norm_num_groups=min(8, ch[0]))
        # The UNet predicts the clean image (squashed by tanh), not the noise: trained from scratch by a reward,
        # an epsilon-predictor's x0 = (x - sqrt(1 - a) eps) / sqrt(a) explodes at the first steps (a ~ 0).
        # Trailing spacing: the last step still has noise (std > 0), so every step is a proper Gaussian policy.
        self.scheduler = DDIMScheduler(num_train_timesteps=1000, beta_schedule="squaredcos_cap_v2", clip_sample=False,
                                       set_alpha_to_one=False, timestep_spacing="trailing", prediction_type="sample")
        self.scheduler.set_timesteps(cfg.steps)

    def condition(self, emb: Tensor, mask: Tensor) -> Tensor:
        """Question embeddings [B, L, D_lm] -> cross-attention states [B, L, cond_dim]."""
        h = self.text_in(emb) + self.pos[: emb.shape[1]]
        if self.text is not None:
            h = self.text(h, src_key_padding_mask=mask == 0)
        return h

    def predict_x0(self, x: Tensor, t: int, cond: Tensor, mask: Tensor) -> Tensor:
        """The clean image the UNet predicts from x_t, in (-1, 1)."""
        return torch.tanh(self.unet(x, t, encoder_hidden_states=cond, encoder_attention_mask=mask).sample)

    def sample(self, cond: Tensor, mask: Tensor, noise: Tensor) -> Trajectory:
        """Chains from `noise` [T+1, N, 3, r, r] (x_T, then each step's noise); differentiable when grad is on
        (the reparameterized path the backprop control trains through)."""
        x = noise[0].to(cond)
        states, log_probs = [x], []
        for i, t in enumerate(self.scheduler.timesteps.tolist()):
            x_prev, mean, std = ddim_step(self.scheduler, self.predict_x0(x, t, cond, mask), t, x, self.cfg.eta,
                                          noise[i + 1].to(x))
            log_probs.append(gaussian_log_prob(x_prev.detach(), mean.detach(), std))
            x = x_prev
            states.append(x)
        return Trajectory(torch.stack(states), self.scheduler.timesteps.clone(), torch.stack(log_probs))

    def log_probs(self, traj: Trajectory, cond: Tensor, mask: Tensor) -> Tensor:
        """The current policy's log-probability of each recorded step [T, N], differentiable in the parameters."""
        out = []
        for i, t in enumerate(traj.timesteps.tolist()):
            x = traj.states[i].detach()
            _, mean, std = ddim_step(self.scheduler, self.predict_x0(x, t, cond, mask), t, x, self.cfg.eta)
            out.append(gaussian_log_prob(traj.states[i + 1].detach(), mean, std))
        return torch.stack(out)


def to_pixels(x: Tensor, resolution: int) -> Tensor:
    """Samples in [-1, 1] [N, 3, r, r] -> images [N, 3, R, R] in [0, 1] (bilinear upsampling)."""
    x = ((x.clamp(-1, 1) + 1) / 2).float()
    if x.shape[-1] != resolution:
        x = F.interpolate(x, size=(resolution, resolution), mode="bilinear", align_corners=False).clamp(0, 1)
    return x


class GeneratorInput(Input):
    """The generator as an `Input`: one network (slot 0); `images(prompts, noise)` samples the questions' images.

    Trained by `mirage.experiments.generator` (its own loop: the images depend on each question's text, which
    `forward(slots)` never sees). `export` gives the weights, so `save_artifact` writes them as safetensors."""

    stage = "pixels"

    def __init__(self, model: VLM, slots: int = 1, config: GeneratorConfig | None = None, seed: int = 0):
        super().__init__(model, 1, seed)
        self.config = config or GeneratorConfig()
        self.resolution = max(s.image_size for s in model.encoders)
        self._model = [model]  # a list: the VLM is not a submodule (its weights are not the generator's)
        text_dim = model.embed(torch.zeros(1, 1, dtype=torch.long, device=model.device)).shape[-1]
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(self.generator("init").initial_seed())
            self.net = QuestionGenerator(self.config, text_dim)

    def reset(self, slot: int, key: str) -> None:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(self.generator(key).initial_seed())
            fresh = QuestionGenerator(self.config, self.net.text_in[0].in_features)
        self.net.load_state_dict(fresh.state_dict())

    def condition(self, prompts: Sequence[str]) -> tuple[Tensor, Tensor]:
        """Cross-attention states and mask for the prompts, differentiable in the generator's parameters."""
        emb, mask = question_embeddings(self._model[0], prompts, self.config.max_text)
        return self.net.condition(emb, mask), mask

    def forward(self, slots: Tensor) -> Visual:
        """Not an input by slots alone: the images depend on each question's text."""
        raise ValueError("a generator needs the prompts and one chain of noise per prompt: images(prompts, noise)")

    def images(self, prompts: Sequence[str], noise: Tensor) -> Visual:
        """Sampled images for `prompts` from `noise` [T+1, N, 3, r, r], as `pixels` at the model's resolution."""
        if len(prompts) != noise.shape[1]:
            raise ValueError("a generator needs the prompts and one chain of noise per prompt: "
                             "images(prompts, noise)")
        cond, mask = self.condition(prompts)
        return Visual("pixels", to_pixels(self.net.sample(cond, mask, noise).final, self.resolution))

    def export(self, slot: int) -> dict[str, Tensor]:
        return {k: v.detach().to("cpu", copy=True).contiguous() for k, v in self.net.state_dict().items()}

    @property
    def noise_shape(self) -> tuple[int, int, int]:
        r = self.config.resolution
        return (3, r, r)

    @property
    def name(self) -> str:
        return "generator"
