import itertools

from mmengine.runner import EpochBasedTrainLoop

from mmpretrain.registry import LOOPS

from ..console import log_summary


class _SkipFirst:
    """A sampler that leaves out the first ``count`` indices of another (same length, so the
    epoch keeps its number of iterations in MMEngine's bookkeeping)."""

    def __init__(self, sampler, count: int):
        self.sampler, self.count = sampler, count

    def __iter__(self):
        return itertools.islice(iter(self.sampler), self.count, None)

    def __len__(self):
        return len(self.sampler)


@LOOPS.register_module()
class ResumableEpochBasedTrainLoop(EpochBasedTrainLoop):
    """MMEngine's epoch loop that can resume in the middle of an epoch.

    A checkpoint written inside an epoch (``RecoveryCheckpointHook``) records how many
    iterations were done; on ``--resume`` the epoch's sampler order is drawn again (it depends
    on the seed and the epoch only) and the batches already trained on are left out before any
    image is loaded, so the run continues with exactly the batches it would have seen::

        train_cfg = dict(type='ResumableEpochBasedTrainLoop', max_epochs=100, val_interval=1)
    """

    def run_epoch(self) -> None:
        done = self._iter - self._epoch * len(self.dataloader)  # this epoch's finished batches
        if done <= 0:
            return super().run_epoch()
        self.runner.call_hook('before_train_epoch')
        self.runner.model.train()
        batch_sampler = self.dataloader.batch_sampler
        sampler = batch_sampler.sampler
        batch_sampler.sampler = _SkipFirst(sampler, done * batch_sampler.batch_size)
        log_summary(self.runner.logger,
                    f'Resuming epoch {self._epoch + 1} at batch {done + 1} of '
                    f'{len(self.dataloader)}' if done < len(self.dataloader) else
                    f'Resuming after the last batch of epoch {self._epoch + 1}')
        try:
            for idx, data_batch in enumerate(self.dataloader, start=done):
                self.run_iter(idx, data_batch)
        finally:
            batch_sampler.sampler = sampler
        self.runner.call_hook('after_train_epoch')
        self._epoch += 1
