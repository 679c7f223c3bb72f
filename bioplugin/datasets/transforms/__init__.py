from .color_jitter import BioColorJitter
from .load_image import BioLoadImage
from .random_affine import BioRandomAffine

__all__ = ['BioColorJitter', 'BioLoadImage', 'BioRandomAffine']
