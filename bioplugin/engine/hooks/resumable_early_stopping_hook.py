from mmengine.hooks import EarlyStoppingHook

from mmpretrain.registry import HOOKS


@HOOKS.register_module()
class ResumableEarlyStoppingHook(EarlyStoppingHook):
    """MMEngine's ``EarlyStoppingHook`` whose best score and patience count survive ``--resume``.

    After each validation the state goes into the runner's message hub, which MMEngine saves
    in every checkpoint and restores only when a run resumes (not for ``load_from``
    initialisation); training picks it up from there::

        custom_hooks = [dict(type='ResumableEarlyStoppingHook', monitor='accuracy/top1',
                             rule='greater', patience=10, min_delta=1e-4)]
    """

    # before EpochEndCheckpointHook (LOWEST), so the epoch checkpoint holds this epoch's state
    priority = 'LOW'
    info_key = 'early_stopping'

    def state_dict(self) -> dict:
        return dict(best_score=self.best_score, wait_count=self.wait_count)

    def load_state_dict(self, state: dict) -> None:
        self.best_score = float(state['best_score'])
        self.wait_count = int(state['wait_count'])

    def before_train(self, runner) -> None:
        super().before_train(runner)
        state = runner.message_hub.get_info(self.info_key)
        if state is not None:
            self.load_state_dict(state)
            runner.logger.info(
                f'Early stopping resumed: best {self.monitor} = {self.best_score:.4f}, '
                f'{self.wait_count}/{self.patience} epochs without improvement.')

    def after_val_epoch(self, runner, metrics) -> None:
        super().after_val_epoch(runner, metrics)
        runner.message_hub.update_info(self.info_key, self.state_dict())
