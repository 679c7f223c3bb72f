from mmengine.hooks import CheckpointHook

from mmpretrain.registry import HOOKS


@HOOKS.register_module()
class EpochEndCheckpointHook(CheckpointHook):
    """MMEngine's ``CheckpointHook`` that writes the epoch checkpoint at the end of the epoch.

    The stock hook saves right after the training iterations, before validation, so a run
    resumed from ``epoch_N.pth`` has lost what validation N changed: the plateau scheduler's
    step, the early-stopping count and the best score. This hook defers the periodic save to
    after validation (the hook runs last), or to the start of the next epoch / the end of
    training when no validation follows. Best checkpoints are saved as before::

        default_hooks = dict(checkpoint=dict(
            type='EpochEndCheckpointHook', interval=1, max_keep_ckpts=1,
            save_best='accuracy/top1', rule='greater'))
    """

    priority = 'LOWEST'

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self._save_pending = False

    def after_train_epoch(self, runner) -> None:
        if not self.by_epoch:
            return super().after_train_epoch(runner)
        self._save_pending = (
            self.every_n_epochs(runner, self.interval, self.save_begin)
            or (self.save_last and self.is_last_train_epoch(runner)))

    def after_val_epoch(self, runner, metrics) -> None:
        super().after_val_epoch(runner, metrics)
        self._save_pending_checkpoint(runner)

    def before_train_epoch(self, runner) -> None:
        self._save_pending_checkpoint(runner)

    def after_train(self, runner) -> None:
        self._save_pending_checkpoint(runner)
        super().after_train(runner)

    def _save_pending_checkpoint(self, runner) -> None:
        if not self._save_pending:
            return
        self._save_pending = False
        # the train loop has already counted the finished epoch
        epoch = runner.epoch
        runner.logger.info(f'Saving checkpoint at {epoch} epochs')
        self._save_checkpoint_with_step(runner, epoch, meta=dict(epoch=epoch, iter=runner.iter))
