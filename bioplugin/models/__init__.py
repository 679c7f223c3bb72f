from .builder import build_model
from .heads import BioClsHead

__all__ = ['BioClsHead', 'build_model']
