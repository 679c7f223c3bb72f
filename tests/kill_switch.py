"""Test-only components that SIGKILL the training process at a chosen moment."""
import errno
import os
import os.path as osp
import signal

from mmengine.fileio import register_backend
from mmengine.hooks import Hook

from bioplugin.engine.atomic_backend import AtomicLocalBackend
from bioplugin.fileio import atomic_open
from mmpretrain.registry import HOOKS


@HOOKS.register_module()
class KillAtIterationHook(Hook):
    """``kill -9`` this process right after training iteration ``iteration`` (1-based)."""

    def __init__(self, iteration: int):
        self.iteration = iteration

    def after_train_iter(self, runner, batch_idx, data_batch=None, outputs=None):
        if runner.iter + 1 == self.iteration:
            os.kill(os.getpid(), signal.SIGKILL)


@register_backend('kill_during_save')
class KillDuringSaveBackend(AtomicLocalBackend):
    """Dies half-way through the ``nth`` write of the file named ``kill_on``."""

    def __init__(self, kill_on: str, nth: int = 1):
        super().__init__()
        self.kill_on, self.nth = kill_on, nth

    def _count_write(self, filepath) -> int:
        """How many times the file has been written, this one included (a backend is built
        anew for every save, so the count lives next to the file)."""
        counter = f'{filepath}.writes'
        count = (int(open(counter).read()) if osp.isfile(counter) else 0) + 1
        with open(counter, 'w') as file:
            file.write(str(count))
        return count

    def put(self, obj: bytes, filepath) -> None:
        if osp.basename(str(filepath)) == self.kill_on and \
                self._count_write(filepath) == self.nth:
            with atomic_open(str(filepath), 'wb') as file:
                file.write(obj[:len(obj) // 2])
                file.flush()
                os.kill(os.getpid(), signal.SIGKILL)
        super().put(obj, filepath)


@register_backend('disk_full')
class DiskFullBackend(AtomicLocalBackend):
    """Every checkpoint write fails as on a full disk."""

    def put(self, obj: bytes, filepath) -> None:
        raise OSError(errno.ENOSPC, 'No space left on device', str(filepath))
