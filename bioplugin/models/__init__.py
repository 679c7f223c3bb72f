from .backbones import TorchvisionBackbone
from .builder import bare_model, build_model, load_trained_model
from .heads import BioClsHead

__all__ = ['BioClsHead', 'TorchvisionBackbone', 'bare_model', 'build_model', 'load_trained_model']
