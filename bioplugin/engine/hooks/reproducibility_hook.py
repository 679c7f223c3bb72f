import numpy as np
import torch
from mmengine.hooks import Hook

from mmpretrain.registry import HOOKS

from ...datasets.sample_seed import derive_seed
from .dataset_utils import iter_bio_datasets


@HOOKS.register_module()
class ReproducibilityHook(Hook):
    """Make a run's randomness a function of (seed, epoch, sample / iteration) only.

    Each training sample's augmentation draws from a generator seeded by (seed, epoch,
    index), in whichever process loads it; before each iteration torch's and numpy's global
    generators (dropout; Mixup's and CutMix's mixing ratio and partner) are seeded by
    (seed, iteration). So on CPU a run resumed after ``kill -9`` ends with the
    same weights, bit for bit, as an uninterrupted one, and ``num_workers`` does not change
    the result. It costs nothing measurable; on GPUs bit-exactness also needs
    ``randomness=dict(deterministic=True)`` (slower cuDNN kernels)::

        custom_hooks = [dict(type='ReproducibilityHook')]
    """

    priority = 'HIGH'

    def before_train_epoch(self, runner) -> None:
        for dataset in iter_bio_datasets(runner.train_dataloader.dataset):
            dataset.set_sample_seed(runner.seed, runner.epoch)

    def before_train_iter(self, runner, batch_idx: int, data_batch=None) -> None:
        seed = derive_seed(runner.seed, runner.iter)
        torch.manual_seed(seed)
        np.random.seed(seed)
