from .builder import bare_model, build_model, load_trained_model
from .heads import BioClsHead

__all__ = ['BioClsHead', 'bare_model', 'build_model', 'load_trained_model']
