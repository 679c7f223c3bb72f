import math
from typing import Iterator, Optional

import numpy as np
import torch
from mmengine.dist import get_dist_info, sync_random_seed
from torch.utils.data import Sampler

from mmpretrain.registry import DATA_SAMPLERS

from ..class_balance import class_counts, inverse_frequency_weights


@DATA_SAMPLERS.register_module()
class ClassBalancedSampler(Sampler):
    """Draw training images so that classes come up evenly, for long-tailed data.

    Each epoch draws ``len(dataset)`` images with replacement, image *i* with probability
    ∝ ``n_c^-1`` (``mode='uniform'``: every class equally often) or ``n_c^-0.5``
    (``mode='sqrt'``: square-root frequency, a milder correction), where ``n_c`` is the size of
    its class. The draw depends on (seed, epoch) only; under DDP every process takes every
    ``world``-th position of it, so the shards are disjoint and together form the epoch.
    ``shuffle`` is accepted so that only ``type`` needs changing from ``DefaultSampler``::

        train_dataloader = dict(sampler=dict(type='ClassBalancedSampler', mode='sqrt'))
    """

    def __init__(self, dataset, mode: str = 'uniform', seed: Optional[int] = None,
                 num_samples: Optional[int] = None, shuffle: bool = True):
        if not shuffle:
            raise ValueError('ClassBalancedSampler draws at random; shuffle=False has no meaning')
        self.rank, self.world_size = get_dist_info()
        self.dataset = dataset
        self.seed = sync_random_seed() if seed is None else seed
        self.epoch = 0
        labels = np.asarray(dataset.get_gt_labels(), dtype=np.int64)
        class_weights = inverse_frequency_weights(class_counts(dataset), mode)
        self.weights = torch.as_tensor(class_weights[labels], dtype=torch.double)
        self.total_size = num_samples or len(dataset)
        self.num_samples = math.ceil(self.total_size / self.world_size)

    def epoch_indices(self) -> torch.Tensor:
        """The whole epoch's draw, identical on every process."""
        generator = torch.Generator().manual_seed(self.seed + self.epoch)
        drawn = torch.multinomial(self.weights, self.total_size, replacement=True,
                                  generator=generator)
        padding = self.num_samples * self.world_size - self.total_size
        return torch.cat([drawn, drawn[:padding]])

    def __iter__(self) -> Iterator[int]:
        return iter(self.epoch_indices()[self.rank::self.world_size].tolist())

    def __len__(self) -> int:
        return self.num_samples

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch
