"""Cambrian-1 (`--model cambrian:<hub id or dir>`): four vision towers, the SVA connector, Llama-3 with vision
sampler layers. See modeling.py for the stages, checkpoint.py for the key mapping, config.py for the shapes."""

from .config import CambrianConfig, TowerConfig, config_8b, tiny_config
from .modeling import CambrianVLM, load_cambrian
from .processing import IMAGE_SIZE

__all__ = ["IMAGE_SIZE", "CambrianConfig", "CambrianVLM", "TowerConfig", "config_8b", "load_cambrian", "tiny_config"]
