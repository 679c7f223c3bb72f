import time
from contextlib import contextmanager

from mmengine.dist import is_main_process
from mmengine.hooks import CheckpointHook

from mmpretrain.registry import HOOKS

from ..work_dir import inside, local_path, write_pointer


@HOOKS.register_module()
class EpochEndCheckpointHook(CheckpointHook):
    """MMEngine's ``CheckpointHook`` that writes the epoch checkpoint at the end of the epoch,
    crash-safely.

    The stock hook saves right after the training iterations, before validation, so a run
    resumed from ``epoch_N.pth`` has lost what validation N changed: the plateau scheduler's
    step, the early-stopping count and the best score. This hook defers the periodic save to
    after validation (the hook runs last), or to the start of the next epoch / the end of
    training when no validation follows.

    Every file is written through a temporary file and a rename (the ``atomic_local``
    backend), ``last_checkpoint`` is updated only once the new checkpoint is complete, and an
    outdated checkpoint (epoch or best) is removed only after its successor is on disk, so a
    kill at any moment leaves a complete checkpoint to resume from.

    ``min_seconds_between_saves``: an epoch checkpoint is written only when that much time
    has passed since the previous one (or since training began), so epochs of a few seconds
    on a small set do not each write the whole model and optimizer (three times the weights,
    a second or more). The last epoch, and the epoch where early stopping ends a run, are
    always saved; a killed run resumes from the latest saved epoch and, being reproducible,
    ends with the same weights. The best checkpoint is written whenever val improves::

        default_hooks = dict(checkpoint=dict(
            type='EpochEndCheckpointHook', interval=1, max_keep_ckpts=1,
            save_best='accuracy/top1', rule='greater', min_seconds_between_saves=60))
    """

    priority = 'LOWEST'

    def __init__(self, *args, backend_args=None, min_seconds_between_saves: float = 0,
                 **kwargs):
        super().__init__(*args, backend_args=backend_args or dict(backend='atomic_local'),
                         **kwargs)
        if not min_seconds_between_saves >= 0:
            raise ValueError(f'min_seconds_between_saves={min_seconds_between_saves!r} must '
                             'be a number of seconds >= 0')
        self.min_seconds_between_saves = min_seconds_between_saves
        self._save_pending = False
        self._epoch_unsaved = False  # an epoch whose save the time limit held back
        self._last_save = time.monotonic()

    def before_train(self, runner) -> None:
        super().before_train(runner)
        self._last_save = time.monotonic()
        self._adopt_best_checkpoints(runner)

    def _adopt_best_checkpoints(self, runner) -> None:
        """A resumed run knows its best checkpoint by the path it had when it was saved; in a
        copied or moved work dir that is another directory's file, which this run must never
        replace. Keep the work dir's file of the same name, or forget the record (the next best
        is then saved anew)."""
        if self.save_best is None:
            return
        recorded = {key: (self.best_ckpt_path if len(self.key_indicators) == 1
                          else self.best_ckpt_path_dict[key]) for key in self.key_indicators}
        for key, path in recorded.items():
            local = local_path(path, self.out_dir)
            if path and local != path:
                runner.logger.warning(
                    f'The resumed run recorded its best checkpoint as {path}, outside this '
                    f'work dir; ' + (f'using {local}' if local else 'it is left alone and the '
                                     'next best is saved here'))
            info = 'best_ckpt' if len(self.key_indicators) == 1 else f'best_ckpt_{key}'
            if len(self.key_indicators) == 1:
                self.best_ckpt_path = local
            else:
                self.best_ckpt_path_dict[key] = local
            if local:
                runner.message_hub.update_info(info, local)

    def after_train_epoch(self, runner) -> None:
        if not self.by_epoch:
            return super().after_train_epoch(runner)
        due = self.every_n_epochs(runner, self.interval, self.save_begin)
        waited = time.monotonic() - self._last_save >= self.min_seconds_between_saves
        last = self.save_last and self.is_last_train_epoch(runner)
        self._save_pending = (due and waited) or last
        self._epoch_unsaved = due and not self._save_pending

    def after_val_epoch(self, runner, metrics) -> None:
        super().after_val_epoch(runner, metrics)
        self._save_pending_checkpoint(runner)

    def before_train_epoch(self, runner) -> None:
        self._save_pending_checkpoint(runner)

    def after_train(self, runner) -> None:
        if self._epoch_unsaved:  # early stopping ended the run at an epoch not saved yet
            self._save_pending = True
        self._save_pending_checkpoint(runner)
        super().after_train(runner)

    def _save_pending_checkpoint(self, runner) -> None:
        if not self._save_pending:
            return
        self._save_pending = self._epoch_unsaved = False
        # the train loop has already counted the finished epoch
        epoch = runner.epoch
        runner.logger.info(f'Saving checkpoint at {epoch} epochs')
        self._save_checkpoint_with_step(runner, epoch, meta=dict(epoch=epoch, iter=runner.iter))
        self._last_save = time.monotonic()

    def _save_checkpoint_with_step(self, runner, step, meta) -> None:
        """MMEngine's save, with the removal of the outdated checkpoint held back until the
        new one is on disk, and ``last_checkpoint`` rewritten atomically."""
        with self._removals_after_save():
            super()._save_checkpoint_with_step(runner, step, meta)
            if is_main_process():
                write_pointer(runner.work_dir, self.last_ckpt)

    def _save_best_checkpoint(self, runner, metrics) -> None:
        with self._removals_after_save():
            super()._save_best_checkpoint(runner, metrics)

    @contextmanager
    def _removals_after_save(self):
        """Hold back the file removals the stock best-checkpoint logic does before saving."""
        backend = self.file_backend
        if isinstance(backend, _DeferredRemovals):  # already deferred by an outer save
            yield
            return
        deferred = _DeferredRemovals(backend)
        self.file_backend = deferred
        try:
            yield
        finally:
            self.file_backend = backend
        for path in deferred.paths:
            if not inside(path, self.out_dir):  # another run's file: never this run's to delete
                continue
            if backend.isfile(path):
                backend.remove(path)


class _DeferredRemovals:
    """A file backend proxy that records ``remove`` calls instead of running them."""

    def __init__(self, backend):
        self._backend = backend
        self.paths = []

    def __getattr__(self, name):
        return getattr(self._backend, name)

    def remove(self, path) -> None:
        self.paths.append(path)

    def rmtree(self, path) -> None:
        self.paths.append(path)
