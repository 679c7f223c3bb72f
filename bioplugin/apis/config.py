"""Load a config with the conveniences every tool shares: ``--cfg-options`` checked for typos,
``--data-root`` for every split, a default work dir. The config's meaning is given by the
components it names (``BioRunner`` and the rest), not here."""
import difflib
import glob
import importlib
import logging
import os.path as osp
from typing import Optional, Sequence

from mmengine.config import Config
from mmengine.logging import print_log

from mmpretrain.registry import DATASETS

from ..datasets.loader_options import DATALOADERS, SPLITS
from ..datasets.normalisation_fill import apply_fill_mean
from ..deploy.runtimes import is_onnx_file
from ..engine.config_values import check_config_numbers
from ..engine.runner import apply_data_root
from ..engine.work_dir import holds_a_run, read_run_record
from ..errors import ConfigError


def load_config(config: str,
                cfg_options: Optional[dict] = None,
                work_dir: Optional[str] = None,
                data_root: Optional[str] = None,
                model_file: Optional[str] = None) -> Config:
    """Read ``config`` and merge ``--cfg-options``.

    - ``model_file``: the model the config will run. An exported ``.onnx`` file needs none of
      the modules the config's ``custom_imports`` name for its model (a backbone's code): one
      that cannot be imported is a warning, not an error.

    - ``data_root`` given here (or as a ``--cfg-options`` key) becomes the data root of every
      split; a split's own ``data_root`` in ``cfg_options`` still wins. Splits without one
      take the config's top-level ``data_root``, as ``BioRunner`` does.
    - ``work_dir`` defaults to ``work_dirs/<config name>``; for the config a training run saved
      in its work dir, to that work dir, and its relative data paths resolve against the
      folder the run was started from (recorded there), so a work dir can be tested and
      reported on from anywhere, also after it was moved.
    """
    if not osp.isfile(config):
        raise ConfigError(f'Config file {config!r} does not exist.')
    onnx_model = model_file is not None and is_onnx_file(model_file)
    try:
        cfg = Config.fromfile(config, import_custom_modules=not onnx_model)
    except (SyntaxError, ValueError, TypeError, KeyError, NameError, ImportError) as error:
        raise ConfigError(
            f'Config file {config!r} cannot be read ({type(error).__name__}: '
            f'{str(error).splitlines()[0][:120] if str(error) else "damaged"}); if a run saved '
            'it, pass the config you trained with (e.g. configs/bio_resnext.py) with '
            '--work-dir.') from None
    if onnx_model:
        import_what_an_onnx_model_can(cfg, model_file)
    saved_in = osp.dirname(osp.abspath(config))
    if not holds_a_run(saved_in):
        saved_in = None
    elif data_root is None:
        resolve_against_run_folder(cfg, saved_in)
    apply_data_root(cfg)
    cfg_options = dict(cfg_options or {})
    _check_override_keys(cfg, cfg_options)
    if data_root is not None:
        cfg_options['data_root'] = data_root
    if 'data_root' in cfg_options:
        cfg.data_root = cfg_options['data_root']
        set_data_root(cfg, cfg.data_root)
    cfg.merge_from_dict(cfg_options)  # a per-split data_root given here wins
    apply_fill_mean(cfg)  # datasets built from this config outside a Runner fill alike
    cfg.work_dir = work_dir or saved_in or cfg.get('work_dir') or osp.join(
        'work_dirs', osp.splitext(osp.basename(config))[0])
    check_config_numbers(cfg)
    return cfg


def import_what_an_onnx_model_can(cfg: Config, model_file: str) -> None:
    """The config's ``custom_imports``, each on its own; one that fails is a warning: the ONNX
    graph holds the model, and what the test pipeline needs comes with bioplugin."""
    for name in (cfg.get('custom_imports') or {}).get('imports', []):
        try:
            importlib.import_module(name)
        except ImportError as error:
            print_log(f'custom_imports: {name!r} cannot be imported ({error}); '
                      f'{osp.basename(model_file)} does not need it.', logger='current',
                      level=logging.WARNING)


def resolve_against_run_folder(cfg: Config, work_dir: str) -> None:
    """Make the relative data roots of a config saved in ``work_dir`` absolute, against the
    folder its run was started from (``run.json``; older work dirs: the current folder)."""
    record = read_run_record(work_dir)
    started_in = (record or {}).get('started_in')
    if not started_in:
        return
    if isinstance(cfg.get('data_root'), str) and not osp.isabs(cfg.data_root):
        cfg.data_root = osp.join(started_in, cfg.data_root)
    for name in DATALOADERS:
        dataset = (cfg.get(name) or {}).get('dataset')
        root = dataset.get('data_root') if isinstance(dataset, dict) else None
        if isinstance(root, str) and not osp.isabs(root):
            dataset.data_root = osp.join(started_in, root)


def _check_override_keys(cfg: Config, cfg_options: dict) -> None:
    """Refuse ``--cfg-options`` keys that are typos: a parent that does not exist, or a new
    key that is one slip away from an existing one (``max_epoch`` for ``max_epochs``)."""
    tree = cfg.to_dict()
    for key in cfg_options:
        parts = key.split('.')
        node = tree
        for depth, part in enumerate(parts[:-1]):
            child = node.get(part) if isinstance(node, dict) else None
            if child is None and isinstance(node, (list, tuple)) and part.isdigit():
                child = node[int(part)] if int(part) < len(node) else None
            if not isinstance(child, (dict, list, tuple)):
                raise ConfigError(
                    f'--cfg-options key {key!r}: {".".join(parts[:depth + 1])!r} is not a '
                    'section of this config; check the spelling.')
            node = child
        leaf = parts[-1]
        if isinstance(node, dict) and leaf not in node:
            close = difflib.get_close_matches(leaf, [str(k) for k in node], n=1, cutoff=0.8)
            if close:
                raise ConfigError(f'--cfg-options key {key!r} is unknown; did you mean '
                                  f'{".".join(parts[:-1] + close)!r}?')


def set_data_root(cfg: Config, data_root: str) -> None:
    """Make ``data_root`` the data root of the train, val and test datasets."""
    for name in DATALOADERS:
        dataset = (cfg.get(name) or {}).get('dataset')
        if isinstance(dataset, dict):
            dataset.data_root = data_root


def build_split_dataset(cfg: Config, split: str, classes: Optional[Sequence[str]] = None):
    """The dataset of ``split`` ('train', 'val' or 'test') without its pipeline: file lists,
    labels and class names, for checks and for prediction. ``classes`` replaces the config's
    class source (e.g. the class list a checkpoint was trained on)."""
    if split not in SPLITS:
        raise ConfigError(f'Unknown split {split!r}; choose one of {", ".join(SPLITS)}.')
    dataset_cfg = dict(cfg[SPLITS[split]].dataset, pipeline=[])
    if classes is not None:
        dataset_cfg.pop('classes_from', None)
        dataset_cfg['classes'] = list(classes)
    return DATASETS.build(dataset_cfg)


def work_dir_config(work_dir: str) -> str:
    """The config a work dir was trained with, saved there when training started (the
    newest, if several)."""
    configs = sorted(glob.glob(osp.join(work_dir, '*.py')), key=osp.getmtime)
    if not configs:
        raise ConfigError(f'{work_dir!r} holds no saved config; pass --config.')
    return configs[-1]
