"""Evaluate a checkpoint on a labeled split, or write the prediction CSV of a split, through
``runner.test()`` and the ``PredictionWriter`` metric. ``tools/test.py`` is a thin CLI over
:func:`build_test_config` and :func:`run_test`."""
import copy
import os.path as osp
from typing import Optional, Tuple

from mmengine.config import Config
from mmengine.runner import Runner

from ..datasets.loader_options import SPLITS
from ..deploy.runtimes import is_onnx_file
from ..engine import checkpoint_io
from ..errors import ConfigError
from ..evaluation.metrics_report import evaluator_list
from ..evaluation.prediction_writer import PredictionWriter
from .config import load_config
from .train import build_runner
from .tta import apply_tta

WRITER = 'PredictionWriter'


def config_metrics(cfg: Config) -> list:
    """The metrics a config evaluates with: those its test ``PredictionWriter`` wraps, else
    its ``val_evaluator``."""
    for metric in evaluator_list(cfg.get('test_evaluator')):
        if metric.get('type') == WRITER:
            return evaluator_list(metric.get('labeled_metrics'))
    return evaluator_list(cfg.get('val_evaluator'))


def build_test_config(cfg: Config, checkpoint: str, split: Optional[str] = None,
                      csv: Optional[str] = None, tta: bool = False, topk: int = 1,
                      class_names: Optional[str] = None, include_index: bool = False,
                      full_name: bool = False, precision: Optional[str] = None,
                      batch_size: Optional[int] = None, num_workers: Optional[int] = None,
                      launcher: str = 'none', out_dir: Optional[str] = None,
                      backend: str = 'onnxruntime', raw_scores: bool = False,
                      review_csv: Optional[str] = None, taxonomy: Optional[str] = None,
                      confident_threshold: float = 0.9, unknown: bool = True,
                      unknown_label: Optional[str] = None, raw_names: bool = False,
                      adapt_priors: bool = False, group_file: Optional[str] = None) -> Config:
    """The config whose ``runner.test()`` evaluates ``checkpoint`` on ``split`` (default
    ``val``), or with ``csv`` writes the predictions of ``split`` (default ``test``) there.

    ``checkpoint`` may be an exported ``.onnx`` file: the config's model is then an
    ``OnnxClassifier`` run by ``backend`` (``onnxruntime`` or ``openvino``), in one process.
    Scores carry the checkpoint's calibration temperature (the ONNX file's) unless
    ``raw_scores``, and then a ``decision`` column; ``review_csv`` also writes the rows to
    review, least certain first. ``taxonomy`` adds the rolled-up ranks (and their accuracy on
    a labeled split), ``confident_rank`` at ``confident_threshold``. With the checkpoint's
    open-set threshold (``tools/analysis/calibrate.py``) ``unknown`` adds the ``unknown`` /
    ``unknown_score`` columns; ``unknown_label`` is then written as their ``pred_label``.
    ``raw_names`` writes names that a spreadsheet would run as formulas without their guard.
    ``adapt_priors`` re-weights each image's scores to the class mix its sample holds (the
    split, or each group of ``group_file``), estimated by EM; the priors go into
    ``<csv>.priors.json``.

    Evaluation writes ``metrics_<split>[_tta].json`` and ``predictions_<split>[_tta].csv``
    into ``out_dir`` (default: the work dir). The split's images go through the test pipeline (``tta``: the TTA
    pipeline and model); an unreadable image keeps its row, flagged.
    """
    cfg = copy.deepcopy(cfg)
    split = split or ('test' if csv else 'val')
    if split not in SPLITS:
        raise ConfigError(f'Unknown split {split!r}; choose one of {", ".join(SPLITS)}.')
    if split != 'test':  # the split's images, seen as the test split is
        loader = copy.deepcopy(cfg[SPLITS[split]])
        loader.dataset.pipeline = copy.deepcopy(cfg.test_dataloader.dataset.pipeline)
        loader.sampler = dict(type='DefaultSampler', shuffle=False)
        loader.drop_last = False
        cfg.test_dataloader = loader
    cfg.test_dataloader.dataset.bad_image_policy = 'placeholder'
    for key, value in (('batch_size', batch_size), ('num_workers', num_workers)):
        if value is not None:
            cfg.test_dataloader[key] = value
    suffix = '_tta' if tta else ''
    in_out_dir = (lambda name: osp.abspath(osp.join(out_dir, name))) if out_dir else str
    cfg.test_evaluator = dict(
        type=WRITER, labeled_metrics=config_metrics(cfg), split=split, topk=topk,
        class_names=class_names, include_index=include_index, full_name=full_name,
        temperature=None if raw_scores else 'auto',
        review_file=osp.abspath(review_csv) if review_csv else None,
        taxonomy=osp.abspath(taxonomy) if taxonomy else None,
        confident_threshold=confident_threshold,
        unknown='auto' if unknown else None, unknown_label=unknown_label, raw_names=raw_names,
        adapt_priors=adapt_priors, group_file=osp.abspath(group_file) if group_file else None,
        out_file=osp.abspath(csv) if csv else in_out_dir(f'predictions_{split}{suffix}.csv'),
        metrics_file=None if csv else in_out_dir(f'metrics_{split}{suffix}.json'))
    if precision is not None:
        cfg.precision = precision
    if is_onnx_file(checkpoint):
        use_onnx_model(cfg, checkpoint, backend, launcher)
    else:
        cfg.load_from = checkpoint_io.resolve_checkpoint(checkpoint)
    if tta:
        apply_tta(cfg)
    cfg.resume = False
    cfg.launcher = launcher
    return cfg


def use_onnx_model(cfg: Config, onnx_file: str, backend: str = 'onnxruntime',
                   launcher: str = 'none') -> None:
    """Make the config's model the exported ``onnx_file``: the test loop, TTA and writers stay
    the same; the runtime brings its own arithmetic (no autocast) and threads."""
    if launcher != 'none':
        raise ConfigError('An ONNX model runs in one process; drop --launcher (ONNX Runtime '
                          'uses every core of the machine).')
    model = dict(type='OnnxClassifier', onnx_file=osp.abspath(onnx_file), backend=backend)
    if isinstance(cfg.get('model'), dict) and cfg.model.get('type') == 'OnnxClassifier':
        model = dict(cfg.model, **model)
    cfg.model = model
    cfg.load_from = None
    cfg.precision = 'fp32'


def onnx_model_config(cfg: Config) -> Optional[dict]:
    """The ``OnnxClassifier`` of a test config (inside a TTA wrapper too), or None."""
    model = cfg.get('model')
    while isinstance(model, dict) and model.get('type') != 'OnnxClassifier':
        model = model.get('module')
    return model


def model_file(cfg: Config) -> str:
    """The checkpoint or ONNX file a :func:`build_test_config` config runs."""
    return cfg.get('load_from') or onnx_model_config(cfg).onnx_file


def run_test(cfg: Config, trust_checkpoint: bool = False) -> Tuple[Runner, dict]:
    """Build the Runner of a :func:`build_test_config` config and test; returns the Runner
    and the metrics (empty for an unlabeled split). ``trust_checkpoint`` allows a checkpoint
    that holds pickled objects beyond weights."""
    if trust_checkpoint and cfg.get('load_from'):
        checkpoint_io.trust_checkpoint(cfg.load_from)
    runner = build_runner(cfg)
    metrics = runner.test()
    return runner, metrics


def prediction_writer(runner: Runner):
    """The ``PredictionWriter`` of a runner's test evaluator."""
    return next(metric for metric in runner.test_evaluator.metrics
                if isinstance(metric, PredictionWriter))


class CheckpointEvaluator:
    """Evaluations of one checkpoint on split after split through one Runner: the model is
    built and its weights loaded once. Calling it with a split returns what :func:`evaluate`
    does; ``options``, as :func:`build_test_config` takes them, hold for every split::

        evaluations = CheckpointEvaluator(cfg, 'work_dirs/run1', raw_scores=True)
        val, train = evaluations('val'), evaluations('train')
    """

    def __init__(self, config, checkpoint: str, cfg_options: Optional[dict] = None,
                 data_root: Optional[str] = None, trust_checkpoint: bool = False, **options):
        self.cfg = config if isinstance(config, Config) else load_config(
            config, cfg_options, data_root=data_root)
        self.checkpoint = checkpoint
        self.trust_checkpoint = trust_checkpoint
        self.options = options
        self.runner = None

    def __call__(self, split: str = 'val') -> dict:
        cfg = build_test_config(self.cfg, self.checkpoint, split, **self.options)
        if self.runner is None:
            self.runner, metrics = run_test(cfg, self.trust_checkpoint)
        else:
            metrics = self.runner.test_with(cfg)
        writer = prediction_writer(self.runner)
        return dict(metrics=metrics, predictions=writer.frame, scores=writer.scores,
                    gt_labels=writer.gt_labels, logits=writer.logits, features=writer.features,
                    temperature=writer.temperature, facts=writer.post_processor.facts,
                    classes=list(writer.dataset_meta['classes']), checkpoint=model_file(cfg),
                    metrics_file=(writer.output_path(cfg.test_evaluator.metrics_file)
                                  if cfg.test_evaluator.metrics_file else None),
                    predictions_file=writer.output_path(cfg.test_evaluator.out_file))


def evaluate(config, checkpoint: str, split: str = 'val', cfg_options: Optional[dict] = None,
             data_root: Optional[str] = None, trust_checkpoint: bool = False,
             **options) -> dict:
    """Evaluate ``checkpoint`` on ``split``, the Python side of ``tools/test.py CONFIG
    CHECKPOINT``; ``options`` as :func:`build_test_config` takes them. Returns ``metrics``,
    ``predictions`` (the per-image table), ``scores`` (every class's probability) and
    ``gt_labels`` (indices, labeled splits), ``logits`` and head ``features`` (None unless the
    head gives them), the ``temperature`` applied, the model's ``facts`` (classes, the
    calibration record, the unknown threshold: :class:`~bioplugin.evaluation.model_facts.
    ModelFacts`), ``classes``,
    ``checkpoint`` and the files written (``metrics_file``, ``predictions_file``). Several
    splits of one checkpoint: :class:`CheckpointEvaluator`."""
    return CheckpointEvaluator(config, checkpoint, cfg_options, data_root, trust_checkpoint,
                               **options)(split)
