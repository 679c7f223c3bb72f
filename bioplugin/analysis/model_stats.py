"""Parameter count and FLOPs of the model a config builds, with MMEngine's complexity analysis."""
from mmengine.analysis import get_model_complexity_info
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
    analysis = get_model_complexity_info(model, input_shape=(3, input_size, input_size),
                                         show_table=False, show_arch=False)
    return dict(params=total, trainable_params=trainable, flops=analysis['flops'],
                input_size=input_size, budget=budget, within_budget=total < budget)


def format_model_stats(stats: dict) -> str:
    verdict = 'PASS' if stats['within_budget'] else 'FAIL'
    return (f"parameters: {stats['params'] / 1e6:.2f} M total, "
            f"{stats['trainable_params'] / 1e6:.2f} M trainable\n"
            f"FLOPs: {stats['flops'] / 1e9:.2f} G at {stats['input_size']}x{stats['input_size']}\n"
            f"budget: < {stats['budget'] / 1e6:g} M parameters: {verdict}")
