from .color_jitter import BioColorJitter
from .load_image import BioLoadImage
from .random_affine import BioRandomAffine
from .random_resized_affine import BioRandomResizedAffine

__all__ = ['BioColorJitter', 'BioLoadImage', 'BioRandomAffine', 'BioRandomResizedAffine']
