from .config import load_config
from .evaluate import evaluate_split, evaluate_to_files, predict_split
from .inference import BioClassifier
from .train import build_train_config, train

__all__ = ['BioClassifier', 'build_train_config', 'evaluate_split', 'evaluate_to_files',
           'load_config', 'predict_split', 'train']
