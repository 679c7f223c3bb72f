"""Let ``torch.load(weights_only=True)`` read the checkpoints MMEngine writes, and nothing more.

Since torch 2.6 ``torch.load`` refuses every pickled object that is not a tensor or a plain
container. MMEngine calls it without arguments (resume, ``load_from``, ``Pretrained`` init,
test tools), and its checkpoints also hold the message hub's ``HistoryBuffer`` objects, numpy
arrays and scalars, and references to ``HistoryBuffer``'s statistics methods (pickled as
``getattr(HistoryBuffer, 'mean')``). This module allow-lists exactly those. ``getattr`` itself
is never allowed: its pickle name is bound to a lookup that only resolves these methods, so a
checkpoint cannot reach any other attribute through it. Importing ``bioplugin`` applies it.
"""
from pickle import UnpicklingError

import numpy as np
import torch
from mmengine.logging import HistoryBuffer

# Attributes a checkpoint may fetch with getattr(): HistoryBuffer's statistics methods.
_GETATTR_ALLOWED = {HistoryBuffer: frozenset(('min', 'max', 'mean', 'current'))}


def restricted_getattr(owner, name: str):
    """``getattr`` limited to the attributes in ``_GETATTR_ALLOWED``."""
    if name not in _GETATTR_ALLOWED.get(owner, ()):
        raise UnpicklingError(f'checkpoint asks for {getattr(owner, "__name__", owner)!r}.{name}, '
                         'which is not on the checkpoint allow-list')
    return getattr(owner, name)


def _numpy_globals() -> list:
    """numpy array and scalar reconstruction, under numpy 2 and numpy 1 pickle names."""
    from numpy._core import multiarray
    entries = [np.ndarray, np.dtype, multiarray._reconstruct, multiarray.scalar]
    for module in ('numpy._core.multiarray', 'numpy.core.multiarray'):
        entries += [(multiarray._reconstruct, f'{module}._reconstruct'),
                    (multiarray.scalar, f'{module}.scalar')]
    # numpy 2 pickles dtypes of arrays by class, e.g. numpy.dtypes.Float64DType
    entries += [(type(np.dtype(code)), f'numpy.dtypes.{type(np.dtype(code)).__name__}')
                for code in np.typecodes['All'] if code not in 'OMm']
    return entries


CHECKPOINT_SAFE_GLOBALS = [
    HistoryBuffer,
    (restricted_getattr, 'builtins.getattr'),
    (restricted_getattr, '__builtin__.getattr'),
    *_numpy_globals(),
]


def allow_checkpoint_types() -> None:
    """Register the allow-list with ``torch.serialization`` (idempotent)."""
    torch.serialization.add_safe_globals(CHECKPOINT_SAFE_GLOBALS)


allow_checkpoint_types()
