"""``BioRunner``: MMEngine's Runner that gives every bioplugin config key its meaning.

Configs select it with ``runner_type`` (``configs/_base_/bio_runtime.py``); MMEngine's
``RUNNERS.build`` — which our tools and MMPretrain's own ``tools/train.py`` / ``tools/test.py``
(and ``mim train mmpretrain``) call — then builds it, so every tool runs a config alike::

    runner_type = 'BioRunner'

Before MMEngine builds anything it resolves, on a copy of the config: the top-level
``data_root`` for splits without their own, ``num_workers='auto'`` and the other machine-dependent
loader settings, ``precision='auto'`` (``inference_layout`` is checked here and applied by the
test run's ``InferenceLayoutHook``), gloo process groups for multi-process runs on CPUs, top-k
accuracies larger than the class count, the data preprocessor's class count (Mixup / CutMix
need it) from the head's, the config's numbers, and a writable work dir. The config's text is
formatted once: MMEngine formats it (yapf, a quarter to half a second) for the log, the message
hub and again inside every checkpoint. The work dir keeps the config as it was declared (an
evaluation saves its own beside its log), and each Runner logs into a folder of its own.
Training holds the work dir's lock (:mod:`~bioplugin.engine.work_dir`), refuses to start afresh
over an earlier run, checks the data against the model, turns
``loss.class_weight='inverse_frequency'`` into weights from the training folders and ImageNet
aliases into checked local files, and says so when it trained nothing. Every checkpoint is
loaded safely and strictly (one sentence when it does not fit), from one mapped read;
``resume`` without a path falls back to the newest complete checkpoint of the work dir; an
evaluation reads the model's facts (classes, calibration, unknown score) once and labels its
split with the model's classes. The console shows a summary or MMEngine's whole log
(:mod:`~bioplugin.engine.console`).
"""
import copy
import os
import os.path as osp
import re
from typing import Optional

from mmengine.config import Config
from mmengine.dist import is_main_process, master_only
from mmengine.registry import RUNNERS  # looked up before any default scope is set
from mmengine.runner import Runner
from mmengine.runner.checkpoint import load_state_dict

from ..datasets.class_balance import resolve_class_weights
from ..datasets.loader_options import DATALOADERS, resolve_loader_options
from ..datasets.normalisation_fill import apply_fill_mean
from ..errors import CheckpointError, ConfigError
from ..evaluation.metrics_report import fit_topk
from ..evaluation.model_facts import ModelFacts
from ..fileio import check_work_dir
from ..models.builder import bare_model
from .config_values import check_config_numbers, check_training_numbers
from .console import apply_console_mode, console_mode, log_summary
from .checkpoint_io import (check_weights_fit, checkpoint_classes, latest_complete_checkpoint,
                            read_checkpoint)
from .distributed import configure_distributed, main_process_first
from .hooks.console_summary_hook import ConsoleSummaryHook
from .hooks.eval_autocast_hook import EvalAutocastHook
from .hooks.freeze_backbone_stages_hook import freeze_before_wrapping
from .hooks.inference_layout_hook import InferenceLayoutHook
from .inference_layout import check_layout
from .optim_wrappers.state_layout import match_parameter_layout
from .precision import apply_precision, channels_last, trains_channels_last
from .pretrained import describe_initial_weights, resolve_pretrained, skip_pretrained
from .work_dir import WorkDirLock, check_fresh_start, write_run_record


def apply_data_root(cfg: Config) -> None:
    """The top-level ``data_root`` is the data root of every split that names none itself."""
    data_root = cfg.get('data_root')
    if data_root is None:
        return
    for name in DATALOADERS:
        dataset = (cfg.get(name) or {}).get('dataset')
        if isinstance(dataset, dict) and dataset.get('type') == 'BioDataset':
            dataset.setdefault('data_root', data_root)


class ResolvedConfig(Config):
    """The config a Runner runs: a config with its machine- and data-dependent keys resolved
    (:func:`resolve_config`). ``declared`` is the config as it was written (what a work dir
    keeps: it must run the same on another machine, where ``precision='auto'`` or
    ``num_workers='auto'`` resolve differently). ``pretty_text`` is formatted once for as
    long as the content stays the same."""

    @classmethod
    def of(cls, cfg: Config) -> 'ResolvedConfig':
        """``cfg`` (not a copy: the same content) as a ``ResolvedConfig`` that remembers a
        copy of it as declared."""
        # a config resolved again keeps what was declared the first time
        declared = copy.deepcopy(getattr(cfg, 'declared', cfg))
        resolved = cls.__new__(cls)
        resolved.__dict__.update(cfg.__dict__)
        # Config's own __setattr__ stores config keys; these are attributes of the object
        super(Config, resolved).__setattr__('declared', declared)
        return resolved

    @property
    def pretty_text(self) -> str:
        content = repr(self.to_dict())
        cached = self.__dict__.get('_formatted')
        if cached is None or cached[0] != content:
            cached = (content, super().pretty_text)
            super(Config, self).__setattr__('_formatted', cached)
        return cached[1]


def resolve_config(cfg: Config) -> Config:
    """A copy of ``cfg`` with the machine- and data-dependent keys resolved (see the module)."""
    cfg = copy.deepcopy(cfg) if isinstance(cfg, Config) else Config(copy.deepcopy(dict(cfg)))
    cfg = ResolvedConfig.of(cfg)
    apply_data_root(cfg)
    apply_fill_mean(cfg)
    check_config_numbers(cfg)
    resolve_loader_options(cfg)
    apply_precision(cfg)
    check_layout(cfg.get('inference_layout', 'auto'))
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
        self._model_facts: Optional[ModelFacts] = None
        self._mapped_checkpoint: Optional[tuple] = None
        self._first_iter = 0
        self.weights_source = 'random initial weights'
        super().__init__(*args, **kwargs)
        self.precision = self.cfg.get('precision', 'fp32')
        self.register_hook(InferenceLayoutHook(self.precision,
                                               self.cfg.get('inference_layout', 'auto')))
        self.register_hook(EvalAutocastHook(self.precision))
        if self.console == 'summary':
            self.register_hook(ConsoleSummaryHook())

    def wrap_model(self, model_wrapper_cfg, model):
        """MMEngine's wrapping; a distributed model that trains channels-last is converted
        first, as DDP keeps views of the parameters it wraps (``ChannelsLastHook`` converts
        a single-process model before training starts), and the stages a
        ``FreezeBackboneStagesHook`` freezes are frozen first."""
        if self.distributed and trains_channels_last(self.cfg):
            channels_last(model)
        if self.distributed:  # DDP expects gradients of what required them when it wrapped
            freeze_before_wrapping(model, self.cfg.get('custom_hooks'))
        return super().wrap_model(model_wrapper_cfg, model)

    def setup_env(self, env_cfg: dict) -> None:
        """MMEngine's set-up, then a log folder of this Runner's own: MMEngine names it by the
        second the Runner starts, so two Runners started within one second in one work dir
        (two runs, or an evaluation of a work dir that trains) would share a log file. In one
        process the folder is claimed (created) here, ``_2``, ``_3``, … when taken."""
        super().setup_env(env_cfg)
        if self.world_size > 1:
            return  # the first process's timestamp is broadcast to all; it logs
        stamp, suffix = self._timestamp, 1
        while True:
            try:
                os.makedirs(osp.join(self.work_dir, self._timestamp))
                return
            except FileExistsError:
                suffix += 1
                self._timestamp = f'{stamp}_{suffix}'

    # ------------------------------------------------------------------ console
    @property
    def console(self) -> str:
        """``'summary'`` or ``'full'`` (see :mod:`~bioplugin.engine.console`)."""
        return console_mode(self.cfg.get('console'))

    def build_logger(self, log_level='INFO', log_file=None, **kwargs):
        """MMEngine's logger (the log file keeps everything), its console filtered for
        ``console='summary'``."""
        logger = super().build_logger(log_level, log_file, **kwargs)
        apply_console_mode(logger, self.console)
        return logger

    # ------------------------------------------------------------------ training
    def check_training_data(self) -> None:
        """Build the training loop and check its data against the model: the class count
        must match the head and the split must fill one batch; string class weights become
        weights from the training folders."""
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
        """Save the config as declared (before this machine resolved it) as
        ``into/<config name>.py``. MMEngine calls this while building the Runner, before it
        is known whether it will train or evaluate, and then nothing is written: training
        saves it into the work dir, where the tools read it back, and an evaluation beside
        its own log, so that an evaluation never replaces the config a work dir was trained
        with."""
        if into is not None:
            declared = getattr(self.cfg, 'declared', self.cfg)
            declared.dump(osp.join(into, osp.basename(self.cfg.filename or
                                                      f'{self.timestamp}.py')))

    def train(self):
        """Train, holding the work dir's lock: one training run per work dir at a time, and a
        fresh start never over an earlier run's checkpoints."""
        check_training_numbers(self.cfg)
        lock = WorkDirLock(self.work_dir).acquire() if is_main_process() else None
        try:
            if not self._resume and is_main_process():
                check_fresh_start(self.work_dir)
            self.dump_config(self.work_dir)
            if is_main_process():
                write_run_record(self.work_dir, osp.basename(self.cfg.filename or ''))
            self.check_training_data()  # before any weights are downloaded
            model = bare_model(self.model)
            if self._resume:
                skip_pretrained(model)  # every weight comes from the checkpoint
                self.weights_source = 'weights of the resumed run'
            else:
                # the first process downloads; the others then find the cached file
                loaded = main_process_first(lambda: resolve_pretrained(model))
                self.weights_source = describe_initial_weights(loaded, self.load_from)
            model = super().train()
            if self.iter == self._first_iter:
                raise ConfigError(
                    f'Nothing was trained: the run had reached train_cfg.max_epochs='
                    f'{self.max_epochs} already; pass a larger one, e.g. `--cfg-options '
                    f'train_cfg.max_epochs={self.max_epochs + 10}`, to train further.')
            return model
        finally:
            if lock is not None:
                lock.release()

    # ------------------------------------------------------------------ evaluation
    @property
    def model_facts(self) -> ModelFacts:
        """What the evaluated model says about its predictions (classes, calibration, unknown
        score), read once per run: from the checkpoint (``load_from``) and the files beside
        it, or from an exported model that carries them (an ONNX file)."""
        if self._model_facts is None or self._model_facts.source != self.load_from:
            model = bare_model(self.model)
            if self.load_from:
                classes = checkpoint_classes(self._read_checkpoint(self.load_from))
                self._model_facts = ModelFacts.from_checkpoint(self.load_from, classes or ())
            elif getattr(model, 'facts', None) is not None:
                self._model_facts = model.facts
            else:
                return None
        return self._model_facts

    def val(self):
        self.dump_config(self.log_dir)
        self._label_with_model_classes(self._val_dataloader)
        return super().val()

    def test(self):
        self.dump_config(self.log_dir)
        self._label_with_model_classes(self._test_dataloader)
        return super().test()

    def test_with(self, cfg: Config) -> dict:
        """Test again with the loader and evaluator of another test config (resolved as
        :meth:`from_cfg` resolves a config); the model and its loaded weights stay. Several
        splits of one checkpoint thus need one Runner."""
        cfg = resolve_config(cfg)
        self._test_dataloader, self._test_evaluator = cfg.test_dataloader, cfg.test_evaluator
        self._test_loop = cfg.get('test_cfg') or dict()
        return self.test()

    def _label_with_model_classes(self, loader) -> None:
        """Evaluate with the classes the model was trained on (a labeled split must have
        exactly those folders; an unlabeled one needs no training folder)."""
        dataset = loader.get('dataset') if isinstance(loader, dict) else None
        facts = self.model_facts if isinstance(dataset, dict) else None
        if facts and facts.classes and dataset.get('type') == 'BioDataset':
            dataset.pop('classes_from', None)
            dataset['classes'] = list(facts.classes)

    def build_test_loop(self, loop):
        return self._prepare_writers(super().build_test_loop(loop))

    def build_val_loop(self, loop):
        return self._prepare_writers(super().build_val_loop(loop))

    def _prepare_writers(self, loop):
        """Hand the model's facts and the built dataset to the metrics that write
        predictions, before any image is read (they check the image names and their
        taxonomy there)."""
        for metric in getattr(getattr(loop, 'evaluator', None), 'metrics', ()):
            if hasattr(metric, 'prepare'):
                metric.prepare(self, loop.dataloader.dataset)
        return loop

    # ------------------------------------------------------------------ checkpoints
    @property
    def load_from(self) -> Optional[str]:
        """The checkpoint this run loads or resumes from (None: none)."""
        return self._load_from

    def _read_checkpoint(self, filename: str) -> dict:
        """The checkpoint, mapped (not read) once per file and run: its class names, the
        weights check and the weights themselves all come from this one read."""
        if self._mapped_checkpoint is None or self._mapped_checkpoint[0] != filename:
            self._mapped_checkpoint = (filename, read_checkpoint(filename, mmap=True))
        return self._mapped_checkpoint[1]

    def load_or_resume(self) -> None:
        if self._resume and self._load_from is None and not self._has_loaded:
            self._load_from = latest_complete_checkpoint(self.work_dir)
            if self._load_from is None:
                raise CheckpointError(
                    f'Nothing to resume in {self.work_dir!r}: it has no complete checkpoint. '
                    'Pass the --work-dir of an earlier run, or run without --resume to start '
                    'training.')
        if self._load_from and not self._has_loaded and self._resume:
            log_summary(self.logger, f'Resuming from {self._load_from}')
        elif self._load_from and not self._has_loaded:
            self.logger.info(f'Loading {self._load_from}')
        super().load_or_resume()
        self._first_iter = self.iter
        if self._resume:  # moments saved on another device may have another layout
            copied = match_parameter_layout(self.optim_wrapper)
            if copied:
                self.logger.info(f'Optimizer state: {copied} tensors given the memory layout '
                                 'of their parameters.')

    def resume(self, filename: str, *args, **kwargs) -> None:
        """MMEngine's resume; an optimizer state of other parameter groups than this config
        builds (another ``--head-lr-mult`` / ``--freeze-stages`` / ``paramwise_cfg``) is one
        sentence."""
        try:
            super().resume(filename, *args, **kwargs)
        except ValueError as error:
            if 'parameter group' not in str(error):
                raise
            raise CheckpointError(
                f'{filename!r} holds the optimizer state of other parameter groups than this '
                'config builds (--head-lr-mult, --freeze-stages or optim_wrapper.paramwise_cfg '
                'differ from the run\'s start); resume with the options it started with.'
            ) from None

    def load_checkpoint(self, filename: str, map_location='cpu', strict: bool = False,
                        revise_keys=[(r'^module.', '')]):
        """MMEngine's ``Runner.load_checkpoint`` on the one mapped read of the file, after
        checking that every tensor fits (a mismatch is one sentence, not a warning followed
        by a model with random weights)."""
        checkpoint = self._read_checkpoint(filename)
        model = bare_model(self.model)
        state_dict = check_weights_fit(model, checkpoint, filename)
        for pattern, replacement in revise_keys:
            state_dict = {re.sub(pattern, replacement, key): value
                          for key, value in state_dict.items()}
        self.call_hook('after_load_checkpoint', checkpoint=checkpoint)
        load_state_dict(model, state_dict, strict=strict, logger=self.logger)
        self._has_loaded = True
        self._mapped_checkpoint = None  # the model holds copies; the file is free again
        self.logger.info(f'Load checkpoint from {filename}')
        return checkpoint
