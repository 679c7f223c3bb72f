from mmengine.hooks import EarlyStoppingHook

from mmpretrain.registry import HOOKS


@HOOKS.register_module()
class ResumableEarlyStoppingHook(EarlyStoppingHook):
    """MMEngine's ``EarlyStoppingHook`` whose best score and patience count survive ``--resume``.

    The state is saved in every checkpoint under ``'early_stopping'`` and restored when the run
    resumes (not when a checkpoint is only used as ``load_from`` initialisation)::

        custom_hooks = [dict(type='ResumableEarlyStoppingHook', monitor='accuracy/top1',
                             rule='greater', patience=10, min_delta=1e-4)]
    """

    # before EpochEndCheckpointHook (LOWEST), so the epoch checkpoint holds this epoch's state
    priority = 'LOW'
    checkpoint_key = 'early_stopping'

    def state_dict(self) -> dict:
        return dict(best_score=self.best_score, wait_count=self.wait_count)

    def load_state_dict(self, state: dict) -> None:
        self.best_score = float(state['best_score'])
        self.wait_count = int(state['wait_count'])

    def before_save_checkpoint(self, runner, checkpoint: dict) -> None:
        checkpoint[self.checkpoint_key] = self.state_dict()

    def after_load_checkpoint(self, runner, checkpoint: dict) -> None:
        if getattr(runner, '_resume', False) and self.checkpoint_key in checkpoint:
            self.load_state_dict(checkpoint[self.checkpoint_key])
            runner.logger.info(
                f'Early stopping resumed: best {self.monitor} = {self.best_score:.4f}, '
                f'{self.wait_count}/{self.patience} epochs without improvement.')
