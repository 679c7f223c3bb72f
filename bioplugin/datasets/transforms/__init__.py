from .color_jitter import BioColorJitter
from .random_affine import BioRandomAffine

__all__ = ['BioColorJitter', 'BioRandomAffine']
