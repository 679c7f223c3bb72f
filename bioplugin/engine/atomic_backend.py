"""A local file backend whose writes are atomic, for checkpoints and their pointer file."""
from mmengine.fileio import LocalBackend, register_backend

from ..fileio import atomic_write


@register_backend('atomic_local')
class AtomicLocalBackend(LocalBackend):
    """MMEngine's ``LocalBackend`` writing through a temporary file and a rename, so a kill
    during a save leaves the previous file intact::

        default_hooks = dict(checkpoint=dict(type='EpochEndCheckpointHook',
                                             backend_args=dict(backend='atomic_local')))
    """

    def put(self, obj: bytes, filepath) -> None:
        atomic_write(str(filepath), obj)

    def put_text(self, obj: str, filepath, encoding: str = 'utf-8') -> None:
        atomic_write(str(filepath), obj, encoding)
