from typing import Iterator

from ...datasets.bio_dataset import BioDataset


def iter_bio_datasets(dataset) -> Iterator[BioDataset]:
    """The ``BioDataset`` objects inside a dataset and its wrappers (repeat, concat, ...)."""
    if isinstance(dataset, BioDataset):
        yield dataset
    for child in getattr(dataset, 'datasets', ()):
        yield from iter_bio_datasets(child)
    if hasattr(dataset, 'dataset'):
        yield from iter_bio_datasets(dataset.dataset)
