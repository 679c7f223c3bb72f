from .torchvision_backbone import TorchvisionBackbone

__all__ = ['TorchvisionBackbone']
