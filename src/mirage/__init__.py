"""mirage: how much of a vision-language model's benchmark score needs a real image?"""

from ._version import __version__
from .benchmarks import Benchmark, Question, load_benchmark
from .conditions import CONDITIONS, get_condition, parse_conditions
from .evaluate import EvalResult, evaluate
from .experiments.study import study
from .models import VLM, Visual, load_model
from .runs import RunDir

__all__ = ["CONDITIONS", "Benchmark", "EvalResult", "Question", "RunDir", "VLM", "Visual", "evaluate",
           "get_condition", "load_benchmark", "load_model", "parse_conditions", "study"]
