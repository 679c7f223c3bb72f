from .bio_dataset import BioDataset, sort_class_names
from .transforms import BioColorJitter, BioRandomAffine

__all__ = ['BioDataset', 'sort_class_names', 'BioColorJitter', 'BioRandomAffine']
