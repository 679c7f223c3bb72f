import os
import os.path as osp
import signal
import time
from typing import Optional, Sequence

import torch
from mmengine.dist import all_reduce, get_world_size, is_main_process
from mmengine.hooks import Hook

from mmpretrain.registry import HOOKS

from ...errors import ConfigError
from ..work_dir import write_pointer

# The exit status of a run stopped by a signal after saving its recovery checkpoint
# (EX_TEMPFAIL: "try again"); tools/slurm_train.sh requeues on it.
PREEMPTED_EXIT_CODE = 75
RECOVERY_FILENAME = 'recovery.pth'
# A repeat within this time is the same request delivered twice (by the scheduler and by a
# launcher such as torchrun that forwards it), not a second one.
REPEAT_GRACE_SECONDS = 1.0


@HOOKS.register_module()
class RecoveryCheckpointHook(Hook):
    """Checkpoints inside an epoch, and a clean stop when the cluster asks for one.

    Every ``interval`` iterations and/or ``minutes`` minutes it writes ``recovery.pth`` in the
    work dir (atomically, replacing the previous one): weights, optimizer, schedulers and the
    position inside the epoch, from which ``--resume`` continues at that very batch
    (``ResumableEpochBasedTrainLoop``) with bit-identical results on CPU. On one of
    ``signals`` (SIGTERM: preemption, SIGUSR1: Slurm's ``--signal`` warning) the current
    iteration finishes, a recovery checkpoint is written, one line is logged and the process
    exits with status 75; a second signal (a second or more later) ends it at once. In
    multi-process runs every process stops after the same iteration and the first one writes.
    PyTorch's loader workers exit on a SIGTERM of their own, so a SIGTERM sent to every process
    of a job ends a run that has loader workers with a loader error (it resumes from the last
    periodic recovery or epoch checkpoint); SIGUSR1 reaches them harmlessly::

        default_hooks = dict(recovery=dict(type='RecoveryCheckpointHook', minutes=30))
    """

    priority = 'LOWEST'  # after the optimizer step and the other hooks of the iteration

    def __init__(self,
                 interval: Optional[int] = None,
                 minutes: Optional[float] = None,
                 signals: Sequence[str] = ('SIGTERM', 'SIGUSR1'),
                 backend_args: Optional[dict] = None):
        if interval is not None and interval < 1:
            raise ConfigError(f'recovery interval={interval}: a positive number of '
                              'iterations, or None')
        if minutes is not None and minutes <= 0:
            raise ConfigError(f'recovery minutes={minutes}: a positive number of minutes, '
                              'or None')
        unknown = [name for name in signals if not hasattr(signal, name)]
        if unknown:
            raise ConfigError(f'Unknown signals {unknown}; use names such as SIGTERM, SIGUSR1.')
        self.interval, self.minutes = interval, minutes
        self.signals = [getattr(signal, name) for name in signals]
        self.backend_args = backend_args or dict(backend='atomic_local')
        self._received: Optional[int] = None
        self._received_at = 0.0
        self._previous_handlers = {}
        self._last_save = time.monotonic()

    # ------------------------------------------------------------------ signals
    def before_train(self, runner) -> None:
        self._last_save = time.monotonic()
        for signum in self.signals:
            self._previous_handlers[signum] = signal.signal(signum, self._on_signal)

    def after_train(self, runner) -> None:
        for signum, handler in self._previous_handlers.items():
            signal.signal(signum, handler)
        self._previous_handlers = {}

    def _on_signal(self, signum, frame) -> None:
        if self._received is None:
            self._received, self._received_at = signum, time.monotonic()
        elif time.monotonic() - self._received_at >= REPEAT_GRACE_SECONDS:
            signal.signal(signum, signal.SIG_DFL)  # asked again: stop now
            os.kill(os.getpid(), signum)

    # ------------------------------------------------------------------ saving
    def after_train_iter(self, runner, batch_idx: int, data_batch=None, outputs=None) -> None:
        signum, due = self._decide(runner)
        if not (signum or due):
            return
        path = self.save(runner)
        if not signum:
            return
        runner.logger.warning(
            f'Stopped by {signal.Signals(signum).name} after iteration {runner.iter + 1} '
            f'(epoch {runner.epoch + 1}, batch {batch_idx + 1}/{len(runner.train_dataloader)}); '
            f'recovery checkpoint {path}; continue with --resume.')
        raise SystemExit(PREEMPTED_EXIT_CODE)

    def _decide(self, runner):
        """``(signal number or 0, save now)``, the same in every process: a signal reached
        any process, or an interval has passed (the first process's clock decides the
        minutes)."""
        due = bool(self.interval and (runner.iter + 1) % self.interval == 0)
        if self.minutes and is_main_process():
            due = due or time.monotonic() - self._last_save >= 60 * self.minutes
        flags = torch.tensor([float(self._received or 0), float(due)])
        if get_world_size() > 1:
            all_reduce(flags, op='max')
        return int(flags[0]), bool(flags[1])

    def save(self, runner) -> str:
        """Write the recovery checkpoint (first process) and point ``last_checkpoint`` at it."""
        path = osp.join(runner.work_dir, RECOVERY_FILENAME)
        runner.save_checkpoint(runner.work_dir, RECOVERY_FILENAME, by_epoch=False,
                               meta=dict(epoch=runner.epoch, iter=runner.iter + 1),
                               backend_args=self.backend_args)
        if is_main_process():
            write_pointer(runner.work_dir, path)
        self._last_save = time.monotonic()
        return path
