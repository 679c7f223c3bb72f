import os.path as osp

from mmengine.hooks import Hook

from mmpretrain.registry import HOOKS

from .dataset_utils import iter_bio_datasets


@HOOKS.register_module()
class BadImageHook(Hook):
    """Collect the images a run could not read in ``<work_dir>/bad_images.txt`` (path and
    reason, one per line) and report their number after each epoch::

        custom_hooks = [dict(type='BadImageHook')]
    """

    filename = 'bad_images.txt'

    def __init__(self):
        self._reported = 0

    def before_train(self, runner) -> None:
        self._attach(runner, (runner.train_loop, runner.val_loop))

    def before_test(self, runner) -> None:
        self._attach(runner, (runner.test_loop, ))

    def after_train_epoch(self, runner) -> None:
        self._report(runner)

    def after_run(self, runner) -> None:
        self._report(runner)

    def _attach(self, runner, loops) -> None:
        """Point the datasets of ``loops`` (None for a loop the run does not have) at the log."""
        for loop in loops:
            loader = getattr(loop, 'dataloader', None)
            for dataset in iter_bio_datasets(getattr(loader, 'dataset', None)):
                dataset.bad_image_log = self.log_path(runner)

    def log_path(self, runner) -> str:
        return osp.join(runner.work_dir, self.filename)

    def _report(self, runner) -> None:
        path = self.log_path(runner)
        if not osp.isfile(path):
            return
        with open(path, encoding='utf-8') as file:
            count = sum(1 for line in file if line.strip())
        if count > self._reported:
            self._reported = count
            runner.logger.warning(f'{count} unreadable image(s) skipped so far; see {path}')
