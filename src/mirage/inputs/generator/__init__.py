"""The question-conditioned diffusion generator (`--input generator`) as an input: the network and its DDIM sampler.
diffusers (seconds to import) is imported when a generator is built. Its training loop (REINFORCE, or backprop as
a control) is `mirage.experiments.generator_train`."""

from .network import GeneratorConfig, GeneratorInput, QuestionGenerator, question_embeddings, to_pixels
from .sampler import Trajectory, ddim_step, draw_noise, gaussian_log_prob

__all__ = ["GeneratorConfig", "GeneratorInput", "QuestionGenerator", "Trajectory", "ddim_step", "draw_noise",
           "gaussian_log_prob", "question_embeddings", "to_pixels"]
