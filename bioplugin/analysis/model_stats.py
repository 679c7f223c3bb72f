"""Parameter count and FLOPs of the model a config builds, with MMEngine's complexity analysis."""
import torch
from mmengine.analysis import FlopAnalyzer
from mmengine.config import Config

from mmpretrain.registry import MODELS

from ..engine.hooks.parameter_count_hook import count_parameters


def model_stats(cfg: Config, input_size: int = 224, budget: float = 100e6) -> dict:
    """``params``, ``trainable_params``, ``flops`` (multiply-adds, MMEngine's convention) at
    ``input_size``², the parameter ``budget`` and whether the model fits it."""
    model_cfg = dict(cfg.model, data_preprocessor=cfg.get('data_preprocessor'))
    model_cfg['backbone'] = dict(model_cfg['backbone'], init_cfg=None)  # no weights needed
    model = MODELS.build(model_cfg).eval()
    total, trainable = count_parameters(model)
    # without the analyser's notes on operators it does not count (pooling, additions:
    # no multiply-adds) and on modules the forward pass does not call (the loss)
    flops = FlopAnalyzer(model, torch.zeros(1, 3, input_size, input_size)) \
        .unsupported_ops_warnings(False).uncalled_modules_warnings(False).total()
    return dict(params=total, trainable_params=trainable, flops=flops,
                input_size=input_size, budget=budget, within_budget=total < budget)


def format_model_stats(stats: dict) -> str:
    verdict = 'PASS' if stats['within_budget'] else 'FAIL'
    return (f"parameters: {stats['params'] / 1e6:.2f} M total, "
            f"{stats['trainable_params'] / 1e6:.2f} M trainable\n"
            f"FLOPs: {stats['flops'] / 1e9:.2f} G at {stats['input_size']}x{stats['input_size']}\n"
            f"budget: < {stats['budget'] / 1e6:g} M parameters: {verdict}")
