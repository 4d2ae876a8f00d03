"""The question-conditioned diffusion generator (`--input generator`), trained by REINFORCE on the benchmark's
reward or, as a control, by backpropagating the answer loss through the sampler. diffusers (seconds to import) is
imported when a generator is built, and the input registry imports this package only when asked for one."""

from .network import GeneratorConfig, GeneratorInput, QuestionGenerator, question_embeddings, to_pixels
from .run import generator_rows, run_generator
from .sampler import Trajectory, ddim_step, draw_noise, gaussian_log_prob
from .train import METHODS, TrainConfig, advantages, policy_loss, train_generator, train_step

__all__ = ["METHODS", "GeneratorConfig", "GeneratorInput", "QuestionGenerator", "TrainConfig", "Trajectory",
           "advantages", "ddim_step", "draw_noise", "gaussian_log_prob", "generator_rows", "policy_loss",
           "question_embeddings", "run_generator", "to_pixels", "train_generator", "train_step"]
