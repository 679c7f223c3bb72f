import datetime
import os.path as osp
import re
import time
from typing import Optional

import torch
from mmengine.hooks import Hook

from mmpretrain.registry import HOOKS

from ...models.builder import bare_model
from ..console import log_summary

PROGRESS_SECONDS = 60  # a progress line inside long epochs and evaluations at most this often


@HOOKS.register_module()
class ConsoleSummaryHook(Hook):
    """The lines a user reads while a run goes (see :mod:`~bioplugin.engine.console`): what
    is trained or evaluated where, one line per epoch with the validation score and the
    ETA, a progress line at most every ``progress_seconds`` inside long epochs and
    evaluations, and how training ended. ``BioRunner`` adds it for ``console='summary'``
    (our tools' default); by hand::

        custom_hooks = [dict(type='ConsoleSummaryHook', progress_seconds=60)]
    """

    priority = 'LOWEST'  # after the checkpoint and early-stopping hooks of the epoch

    def __init__(self, progress_seconds: float = PROGRESS_SECONDS):
        self.progress_seconds = progress_seconds
        self._started = self._last_line = 0.0
        self._first_epoch = 0
        self._training = False

    # ------------------------------------------------------------------ training
    def before_train(self, runner) -> None:
        self._started = self._last_line = time.monotonic()
        self._first_epoch, self._training = runner.epoch, True
        train = runner.train_dataloader.dataset
        val = getattr(runner.val_loop, 'dataloader', None)
        images = f'{len(train)} train' + (f' / {len(val.dataset)} val' if val else '')
        classes = len(train.metainfo.get('classes') or ())
        weights = (f'resuming after epoch {runner.epoch} from {runner.load_from}'
                   if runner.epoch else getattr(runner, 'weights_source', ''))
        log_summary(runner.logger, '; '.join(part for part in (
            f'Training {_config_name(runner)}: {classes} classes, {images} images, up to '
            f'{runner.max_epochs} epochs', weights,
            f'on {_device(runner)} in {runner.precision}', f'work dir {runner.work_dir}')
            if part))

    def after_train_iter(self, runner, batch_idx: int, data_batch=None, outputs=None) -> None:
        batches = len(runner.train_dataloader)
        if not self._due() or batch_idx + 1 >= batches:
            return
        loss = outputs.get('loss') if isinstance(outputs, dict) else None
        loss = f', loss {float(loss):.3f}' if isinstance(loss, torch.Tensor) else ''
        log_summary(runner.logger, f'epoch {runner.epoch + 1}/{runner.max_epochs}: batch '
                    f'{batch_idx + 1}/{batches}{loss}')

    def after_train_epoch(self, runner) -> None:
        if not self._validates_after(runner, runner.epoch + 1):
            self._epoch_line(runner, runner.epoch + 1, None)

    def after_val_epoch(self, runner, metrics=None) -> None:
        if self._training:
            self._epoch_line(runner, runner.epoch, metrics or {})

    def after_train(self, runner) -> None:
        self._training = False
        epochs = runner.epoch - self._first_epoch
        how = 'ended'
        if getattr(runner.train_loop, 'stop_training', False):
            patience = next((hook.patience for hook in runner.hooks
                             if hasattr(hook, 'patience')), None)
            how = ('stopped early' + (f' (no val improvement in {patience} epochs)'
                                      if patience else ''))
        log_summary(runner.logger, f'Training {how} after epoch {runner.epoch}: {epochs} '
                    f'epochs in {_duration(time.monotonic() - self._started)}'
                    f'{_best(runner)}')

    # ------------------------------------------------------------------ evaluation
    def before_test(self, runner) -> None:
        self._last_line = time.monotonic()
        dataset = runner.test_loop.dataloader.dataset
        model_file = runner.load_from or getattr(bare_model(runner.model), 'onnx_file', '')
        folder = getattr(dataset, 'data_prefix', {}).get('img_path') or dataset.data_root
        log_summary(runner.logger, f'Predicting {len(dataset)} images of {folder} with '
                    f'{model_file} on {_device(runner)} in {runner.precision}')

    def after_test_iter(self, runner, batch_idx: int, data_batch=None, outputs=None) -> None:
        self._evaluation_progress(runner, runner.test_loop, batch_idx, 'predicting')

    def after_val_iter(self, runner, batch_idx: int, data_batch=None, outputs=None) -> None:
        self._evaluation_progress(runner, runner.val_loop, batch_idx, 'validating')

    # ------------------------------------------------------------------ helpers
    def _due(self) -> bool:
        now = time.monotonic()
        if now - self._last_line < self.progress_seconds:
            return False
        self._last_line = now
        return True

    def _evaluation_progress(self, runner, loop, batch_idx: int, what: str) -> None:
        batches = len(loop.dataloader)
        if self._due() and batch_idx + 1 < batches:
            log_summary(runner.logger, f'{what}: batch {batch_idx + 1}/{batches}')

    @staticmethod
    def _validates_after(runner, epoch: int) -> bool:
        """Whether the train loop validates after ``epoch`` (MMEngine's rule)."""
        loop = runner.train_loop
        return runner.val_loop is not None and epoch >= loop.val_begin and (
            epoch % loop.val_interval == 0 or epoch == loop.max_epochs)

    def _epoch_line(self, runner, epoch: int, metrics: Optional[dict]) -> None:
        self._last_line = time.monotonic()
        parts = [f'epoch {epoch}/{runner.max_epochs}']
        if 'train/loss' in runner.message_hub.log_scalars:
            loss = runner.message_hub.get_scalar('train/loss')
            parts.append(f'loss {loss.mean(len(runner.train_dataloader)):.3f}')
        key = _monitored(runner)
        if metrics and key in metrics:
            parts.append(f'val {key} {float(metrics[key]):.2f}' + _best(runner, brief=True))
        done = epoch - self._first_epoch
        per_epoch = (time.monotonic() - self._started) / max(done, 1)
        left = (runner.max_epochs - epoch) * per_epoch
        parts.append(f'{_duration(per_epoch)}/epoch, ETA {_duration(left)}'
                     if epoch < runner.max_epochs else f'{_duration(per_epoch)}/epoch')
        log_summary(runner.logger, ', '.join(parts))


def _monitored(runner) -> str:
    """The metric the best checkpoint is chosen by (``accuracy/top1`` in our configs)."""
    for hook in runner.hooks:
        keys = getattr(hook, 'key_indicators', None)
        if keys:
            return keys[0]
    return 'accuracy/top1'


def _best(runner, brief: bool = False) -> str:
    """`` (best 53.33 at epoch 2)``, from what the checkpoint hook keeps (it survives a
    resume), or nothing before there is a best."""
    score = runner.message_hub.get_info('best_score')
    if score is None:
        return ''
    found = re.search(r'epoch_(\d+)', osp.basename(runner.message_hub.get_info('best_ckpt') or ''))
    at = f' at epoch {found.group(1)}' if found else ''
    return (f' (best {score:.2f}{at})' if brief
            else f'; best val {_monitored(runner)} {score:.2f}{at}')


def _duration(seconds: float) -> str:
    if seconds < 60:
        return f'{seconds:.0f} s'
    return str(datetime.timedelta(seconds=round(seconds)))


def _device(runner) -> str:
    parameter = next(iter(bare_model(runner.model).parameters()), None)
    return parameter.device.type if parameter is not None else 'cpu'


def _config_name(runner) -> str:
    return osp.basename(runner.cfg.filename) if runner.cfg.filename else 'the config'
