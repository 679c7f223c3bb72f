"""Test-time augmentation as MMPretrain's ``tools/test.py --tta`` sets it up."""
import copy

from mmengine.config import Config


def tta_pipeline(cfg: Config) -> list:
    """The config's ``tta_pipeline``, or the test pipeline seen as is and mirrored."""
    if cfg.get('tta_pipeline'):
        return copy.deepcopy(cfg.tta_pipeline)
    test_pipeline = copy.deepcopy(cfg.test_dataloader.dataset.pipeline)
    pack = test_pipeline.pop()
    return test_pipeline + [dict(
        type='TestTimeAug',
        transforms=[[dict(type='RandomFlip', prob=0.),
                     dict(type='RandomFlip', prob=1., direction='horizontal')],
                    [pack]])]


def tta_model(cfg: Config, model_cfg: dict) -> dict:
    """``model_cfg`` wrapped in the config's ``tta_model`` (default: MMPretrain's
    ``AverageClsScoreTTA``, the mean of the views' class probabilities)."""
    return dict(cfg.get('tta_model') or dict(type='AverageClsScoreTTA'), module=model_cfg)


def apply_tta(cfg: Config) -> None:
    """Test with the TTA pipeline and model, in place (``tools/test.py --tta``)::

        tta_model = dict(type='AverageClsScoreTTA')
        tta_pipeline = [..., dict(type='TestTimeAug', transforms=[[...views...], [pack]])]
    """
    cfg.test_dataloader.dataset.pipeline = tta_pipeline(cfg)
    cfg.model = tta_model(cfg, cfg.model)
