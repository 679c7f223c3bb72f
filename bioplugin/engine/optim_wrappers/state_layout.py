"""Optimizer state in the memory layout of its parameters, after a resume."""
from typing import Iterable

import torch
from mmengine.optim import OptimWrapper, OptimWrapperDict


def _optimizers(optim_wrapper) -> Iterable[torch.optim.Optimizer]:
    if isinstance(optim_wrapper, OptimWrapperDict):
        return [wrapper.optimizer for wrapper in optim_wrapper.values()]
    if isinstance(optim_wrapper, OptimWrapper):
        return [optim_wrapper.optimizer]
    return []  # not built (an evaluation-only Runner)


def match_parameter_layout(optim_wrapper) -> int:
    """Copy every per-parameter state tensor (AdamW's two moments) whose strides differ from
    its parameter's into the parameter's layout; returns how many were copied.

    A checkpoint keeps the layout its tensors had: moments saved by a channels-last run (a
    GPU) are channels-last, and loading the checkpoint keeps them so. Resumed where the
    parameters are NCHW (a CPU), or the other way round, the fused AdamW kernel pairs
    parameter, gradient and moments element by element in memory order: on a CPU it mixes
    them up without a word, on a GPU it refuses the step.
    """
    copied = 0
    for optimizer in _optimizers(optim_wrapper):
        for param, state in optimizer.state.items():
            for key, value in state.items():
                if (torch.is_tensor(value) and value.shape == param.shape
                        and value.stride() != param.stride()):
                    state[key] = torch.empty_like(param, dtype=value.dtype).copy_(value)
                    copied += 1
    return copied
