"""The per-family pieces of the generic transformers path (`hf_generic`): at a fixed square input size, each family
says how its image processor lays the image out (a differentiable twin built from the processor's own
configuration), how its vision tower gives the features the connector reads, and how the connector turns them into
the tokens spliced into the LM. Everything else (prompt, splicing, LM, native resolution) is shared.

Families: `Anyres` (LLaVA-OneVision, and LLaVA-NeXT as `LlavaNext`, which takes several images: a tile grid chosen
once at the fixed size, unpadding and newline tokens by the model's own `pack_image_features`), `Gemma3` and `PaliGemma` (one SigLIP image; Gemma 3's pooling
projector), `Idefics3` (Idefics3, SmolVLM: tiles plus the global image, pixel shuffle in the connector), `InternVL`
(crop_to_patches tiles plus the thumbnail), `Pixtral` (Mistral 3: one image at its own patch grid), and `Probed`
for any other model that passes its probes.
"""

from __future__ import annotations

from .anyres import Anyres, LlavaNext
from .base import Family, NotGeneric, resize
from .single import Gemma3, PaliGemma, Pixtral, Probed
from .tiles import Idefics3, InternVL

# model types the generic path cannot run, and why: said by name, never run as if they fit
REFUSED = {
    "mllama": "Llama-3.2-Vision reads the image through cross-attention layers inside the LM, not as tokens spliced "
              "into its input embeddings, so there are no `tokens` to optimize or splice",
}


FAMILIES = {"llava_next": LlavaNext, "llava_onevision": Anyres, "gemma3": Gemma3, "paligemma": PaliGemma,
            "idefics3": Idefics3, "smolvlm": Idefics3, "internvl": InternVL, "mistral3": Pixtral}

__all__ = ["FAMILIES", "REFUSED", "Anyres", "Family", "Gemma3", "Idefics3", "InternVL", "LlavaNext", "NotGeneric",
           "PaliGemma", "Pixtral", "Probed", "resize"]
