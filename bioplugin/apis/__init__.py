from .config import load_config
from .train import build_train_config, train

__all__ = ['build_train_config', 'load_config', 'train']
