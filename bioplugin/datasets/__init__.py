from .bio_dataset import BioDataset, sort_class_names
from .samplers import ClassBalancedSampler
from .transforms import BioColorJitter, BioRandomAffine

__all__ = ['BioColorJitter', 'BioDataset', 'BioRandomAffine', 'ClassBalancedSampler',
           'sort_class_names']
