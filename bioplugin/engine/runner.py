"""``BioRunner``: MMEngine's Runner that gives every bioplugin config key its meaning.

Configs select it with ``runner_type`` (``configs/_base_/bio_runtime.py``); MMEngine's
``RUNNERS.build`` — which our tools and MMPretrain's own ``tools/train.py`` / ``tools/test.py``
(and ``mim train mmpretrain``) call — then builds it, so every tool runs a config alike::

    runner_type = 'BioRunner'

Before MMEngine builds anything it resolves, on a copy of the config: the top-level
``data_root`` for splits without their own, ``num_workers='auto'`` and the other machine-dependent
loader settings, ``precision='auto'``, gloo process groups for multi-process runs on CPUs, top-k
accuracies larger than the class count, the data preprocessor's class count (Mixup / CutMix
need it) from the head's, and a writable work dir. The config's text is formatted once: MMEngine
formats it (yapf, a quarter to half a second) for the log, the dump, the message hub and again
inside every checkpoint. The work dir keeps the config it was trained with (an evaluation saves
its own beside its log). Training checks the data
against the model, turns ``loss.class_weight='inverse_frequency'`` into weights from the
training folders and ImageNet aliases into checked local files. Every checkpoint is loaded
safely and strictly (one sentence when it does not fit), ``resume`` without a path falls back
to the newest complete checkpoint, and evaluation labels its split with the checkpoint's classes.
"""
import copy
import os.path as osp
from typing import Optional

from mmengine.config import Config
from mmengine.dist import master_only
from mmengine.registry import RUNNERS  # looked up before any default scope is set
from mmengine.runner import Runner

from ..datasets.class_balance import resolve_class_weights
from ..datasets.loader_options import DATALOADERS, resolve_loader_options
from ..errors import CheckpointError, ConfigError
from ..evaluation.metrics_report import fit_topk
from ..fileio import check_work_dir
from ..models.builder import bare_model
from .checkpoint_io import (check_weights_fit, checkpoint_classes, latest_complete_checkpoint,
                            read_checkpoint)
from .distributed import configure_distributed, main_process_first
from .hooks.eval_autocast_hook import EvalAutocastHook
from .hooks.inference_layout_hook import InferenceLayoutHook
from .optim_wrappers.state_layout import match_parameter_layout
from .precision import apply_precision, channels_last, trains_channels_last
from .pretrained import resolve_pretrained, skip_pretrained


def apply_data_root(cfg: Config) -> None:
    """The top-level ``data_root`` is the data root of every split that names none itself."""
    data_root = cfg.get('data_root')
    if data_root is None:
        return
    for name in DATALOADERS:
        dataset = (cfg.get(name) or {}).get('dataset')
        if isinstance(dataset, dict) and dataset.get('type') == 'BioDataset':
            dataset.setdefault('data_root', data_root)


class FormattedOnceConfig(Config):
    """A ``Config`` whose ``pretty_text`` is formatted once for as long as its content stays
    the same."""

    @property
    def pretty_text(self) -> str:
        content = repr(self._cfg_dict)
        cached = self.__dict__.get('_formatted')
        if cached is None or cached[0] != content:
            cached = (content, super().pretty_text)
            super(Config, self).__setattr__('_formatted', cached)  # Config's own __setattr__
        return cached[1]                                          # stores config keys


def formatted_once(cfg: Config) -> FormattedOnceConfig:
    """``cfg`` (not a copy: the same content) as a :class:`FormattedOnceConfig`."""
    other = FormattedOnceConfig.__new__(FormattedOnceConfig)
    other.__dict__.update(cfg.__dict__)
    return other


def resolve_config(cfg: Config) -> Config:
    """A copy of ``cfg`` with the machine- and data-dependent keys resolved (see the module)."""
    cfg = copy.deepcopy(cfg) if isinstance(cfg, Config) else Config(copy.deepcopy(dict(cfg)))
    cfg = formatted_once(cfg)
    apply_data_root(cfg)
    resolve_loader_options(cfg)
    apply_precision(cfg)
    configure_distributed(cfg)
    num_classes = cfg.get('model', {}).get('head', {}).get('num_classes')
    if num_classes:
        for name in ('val_evaluator', 'test_evaluator'):
            fit_topk(cfg.get(name), num_classes)
        preprocessor = cfg.model.get('data_preprocessor') or cfg.get('data_preprocessor')
        if isinstance(preprocessor, dict):
            preprocessor.setdefault('num_classes', num_classes)
    check_work_dir(cfg.work_dir)
    return cfg


@RUNNERS.register_module()
class BioRunner(Runner):
    """MMEngine's Runner for bioplugin configs (see the module docstring)."""

    @classmethod
    def from_cfg(cls, cfg: Config) -> 'BioRunner':
        return super().from_cfg(resolve_config(cfg))

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.precision = self.cfg.get('precision', 'fp32')
        self.register_hook(InferenceLayoutHook(self.precision))
        self.register_hook(EvalAutocastHook(self.precision))

    def wrap_model(self, model_wrapper_cfg, model):
        """MMEngine's wrapping; a distributed model that trains channels-last is converted
        first, as DDP keeps views of the parameters it wraps (``ChannelsLastHook`` converts
        a single-process model before training starts)."""
        if self.distributed and trains_channels_last(self.cfg):
            channels_last(model)
        return super().wrap_model(model_wrapper_cfg, model)

    # ------------------------------------------------------------------ training
    def check_training_data(self) -> None:
        """Build the training loop and check its data against the model: the class count
        must match the head and the split must fill one batch; string class weights become
        weights from the training folders."""
        self._train_loop = self.build_train_loop(self._train_loop)
        dataloader = self.train_loop.dataloader
        dataset = dataloader.dataset
        classes = dataset.metainfo.get('classes') or ()
        head = getattr(bare_model(self.model), 'head', None)
        num_classes = getattr(head, 'num_classes', None)
        if classes and num_classes not in (None, len(classes)):
            raise ConfigError(
                f'The training data has {len(classes)} classes but the model head has '
                f'{num_classes} outputs; set `--cfg-options model.head.num_classes='
                f'{len(classes)}`.')
        if dataloader.drop_last and len(dataset) < dataloader.batch_size:
            raise ConfigError(
                f'The training split has {len(dataset)} images, fewer than one batch of '
                f'{dataloader.batch_size}; lower `train_dataloader.batch_size`.')
        resolve_class_weights(bare_model(self.model), dataset)

    @master_only
    def dump_config(self, into: Optional[str] = None) -> None:
        """Save the config as ``into/<config name>.py``. MMEngine calls this while building the
        Runner, before it is known whether it will train or evaluate, and then nothing is
        written: training saves it into the work dir, where the tools read it back, and an
        evaluation beside its own log, so that an evaluation never replaces the config a work
        dir was trained with."""
        if into is not None:
            self.cfg.dump(osp.join(into, osp.basename(self.cfg.filename or
                                                      f'{self.timestamp}.py')))

    def train(self):
        self.dump_config(self.work_dir)
        self.check_training_data()  # before any weights are downloaded
        model = bare_model(self.model)
        if self._resume:
            skip_pretrained(model)  # every weight comes from the checkpoint
        else:
            # the first process downloads; the others then find the cached file
            main_process_first(lambda: resolve_pretrained(model))
        return super().train()

    # ------------------------------------------------------------------ evaluation
    def val(self):
        self.dump_config(self.log_dir)
        self._label_with_checkpoint_classes(self._val_dataloader)
        return super().val()

    def test(self):
        self.dump_config(self.log_dir)
        self._label_with_checkpoint_classes(self._test_dataloader)
        return super().test()

    def test_with(self, cfg: Config) -> dict:
        """Test again with the loader and evaluator of another test config (resolved as
        :meth:`from_cfg` resolves a config); the model and its loaded weights stay. Several
        splits of one checkpoint thus need one Runner."""
        cfg = resolve_config(cfg)
        self._test_dataloader, self._test_evaluator = cfg.test_dataloader, cfg.test_evaluator
        self._test_loop = cfg.get('test_cfg') or dict()
        return self.test()

    def _label_with_checkpoint_classes(self, loader) -> None:
        """Evaluate with the classes the checkpoint was trained on (a labeled split must
        have exactly those folders; an unlabeled one needs no training folder)."""
        dataset = loader.get('dataset') if isinstance(loader, dict) else None
        if not isinstance(dataset, dict):
            return
        if self._load_from:
            classes = checkpoint_classes(read_checkpoint(self._load_from, mmap=True))
        else:  # a model that carries its classes (an exported ONNX file)
            classes = getattr(bare_model(self.model), 'classes', None)
        if classes and dataset.get('type') == 'BioDataset':
            dataset.pop('classes_from', None)
            dataset['classes'] = list(classes)

    def build_evaluator(self, evaluator):
        evaluator = super().build_evaluator(evaluator)
        for metric in evaluator.metrics:
            if hasattr(metric, 'attach'):  # prediction writers: where and what they record
                metric.attach(self)
        return evaluator

    # ------------------------------------------------------------------ checkpoints
    def load_or_resume(self) -> None:
        if self._resume and self._load_from is None and not self._has_loaded:
            self._load_from = latest_complete_checkpoint(self.work_dir)
            if self._load_from is None:
                raise CheckpointError(
                    f'Nothing to resume in {self.work_dir!r}: it has no complete checkpoint. '
                    'Pass the --work-dir of an earlier run, or run without --resume to start '
                    'training.')
        if self._load_from and not self._has_loaded:
            self.logger.info(f"{'Resuming from' if self._resume else 'Loading'} "
                             f'{self._load_from}')
        super().load_or_resume()
        if self._resume:  # moments saved on another device may have another layout
            copied = match_parameter_layout(self.optim_wrapper)
            if copied:
                self.logger.info(f'Optimizer state: {copied} tensors given the memory layout '
                                 'of their parameters.')

    def load_checkpoint(self, filename: str, map_location='cpu', strict: bool = False,
                        revise_keys=[(r'^module.', '')]):
        """MMEngine's loading, after checking that every tensor fits (a mismatch is one
        sentence, not a warning followed by a model with random weights)."""
        check_weights_fit(bare_model(self.model), read_checkpoint(filename, mmap=True), filename)
        return super().load_checkpoint(filename, map_location, strict, revise_keys)
