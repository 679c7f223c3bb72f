"""Per-sample random state: augmentation that depends on (seed, epoch, index) only.

With the draws of every sample fixed by its key, a resumed run and an uninterrupted one
augment identically, and so do runs with any number of loader workers.
"""
import random
from contextlib import contextmanager
from typing import Iterator

import numpy as np


def derive_seed(*keys: int) -> int:
    """A 32-bit seed that mixes ``keys`` (non-negative integers) well."""
    return int(np.random.SeedSequence([abs(int(key)) for key in keys]).generate_state(1)[0])


@contextmanager
def seeded_global_rng(seed: int) -> Iterator[None]:
    """Seed numpy's and Python's global generators (the ones MMCV transforms draw from) for
    the block, then put back their previous state."""
    numpy_state, python_state = np.random.get_state(), random.getstate()
    np.random.seed(seed)
    random.seed(seed)
    try:
        yield
    finally:
        np.random.set_state(numpy_state)
        random.setstate(python_state)
