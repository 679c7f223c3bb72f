"""``PhaseTimerHook``: wall-clock stamps of a training run's phases, for the small-run benchmark.

The benchmark adds it to a copy of the config it times (``custom_imports`` with ``tools/`` on
``PYTHONPATH``); it only reads the clock::

    custom_imports = dict(imports=['bioplugin', 'benchmarking.phase_timer'])
    custom_hooks = [..., dict(type='PhaseTimerHook', file='phases.json')]
"""
import json
import time

from mmengine.hooks import Hook

from mmpretrain.registry import HOOKS


@HOOKS.register_module()
class PhaseTimerHook(Hook):
    """Record ``time.time()`` at the start and end of every training epoch and validation,
    and at the end of training; written to ``file`` when training ends. Its priority puts
    the end-of-validation stamp before the checkpoint hook's save (LOWEST)."""

    priority = 'VERY_LOW'

    def __init__(self, file: str):
        self.file = file
        self.stamps = dict(train=[], val=[])

    def before_train_epoch(self, runner) -> None:
        self.stamps['train'].append([time.time(), None])

    def after_train_epoch(self, runner) -> None:
        self.stamps['train'][-1][1] = time.time()

    def before_val_epoch(self, runner) -> None:
        self.stamps['val'].append([time.time(), None])

    def after_val_epoch(self, runner, metrics=None) -> None:
        self.stamps['val'][-1][1] = time.time()

    def after_train(self, runner) -> None:
        self.stamps['done'] = time.time()
        with open(self.file, 'w') as file:
            json.dump(self.stamps, file)
