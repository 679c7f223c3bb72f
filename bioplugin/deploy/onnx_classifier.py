"""``OnnxClassifier``: an exported ONNX file in the place of the PyTorch classifier, so the
Runner's test loop, ``PredictionWriter`` and ``BioClassifier`` run it unchanged.

``tools/test.py CONFIG model.onnx`` puts it in the config; written out::

    model = dict(type='OnnxClassifier', onnx_file='work_dirs/bio_resnext/model.onnx',
                 backend='onnxruntime')   # or 'openvino'
"""
from typing import List, Optional

import torch
import torch.nn.functional as F
from mmengine.model import BaseModel

from mmpretrain.registry import MODELS
from mmpretrain.structures import DataSample

from ..errors import ConfigError
from ..evaluation.model_facts import ModelFacts
from .metadata import UNKNOWN_OUTPUT
from .runtimes import open_runtime


@MODELS.register_module()
class OnnxClassifier(BaseModel):
    """Predict with ``onnx_file`` through ``backend`` (``onnxruntime`` or ``openvino``).

    The pipeline's BGR ``uint8`` images are stacked and turned to RGB by the data
    preprocessor; a ``mean`` / ``std`` given to it is ignored (the normalisation is inside
    the graph). Each sample gets the graph's ``pred_logits`` (``pred_score`` is their plain
    softmax) and, from a file with an ``unknown_score`` output, ``pred_unknown_score``;
    ``facts`` (:class:`~bioplugin.evaluation.model_facts.ModelFacts`: classes, calibration
    temperature, review and unknown thresholds) come from the file's metadata, for the
    post-processor that turns the logits into a table.
    """

    def __init__(self,
                 onnx_file: str,
                 backend: str = 'onnxruntime',
                 threads: Optional[int] = None,
                 data_preprocessor: Optional[dict] = None,
                 init_cfg: Optional[dict] = None):
        # stack and turn to RGB only, whatever the config's preprocessor normalises with
        preprocessor = dict(data_preprocessor or {}, type='ClsDataPreprocessor', mean=None,
                            std=None, to_rgb=True)
        super().__init__(data_preprocessor=preprocessor, init_cfg=init_cfg)
        self.onnx_file = onnx_file
        self.backend = backend
        self.runtime = open_runtime(onnx_file, backend, threads)
        self.metadata = self.runtime.metadata
        self.facts = ModelFacts.from_onnx_metadata(onnx_file, self.metadata)
        self.classes = self.facts.classes
        self.input_size = (self.metadata['input']['height'], self.metadata['input']['width'])
        self.outputs = ['logits'] + ([UNKNOWN_OUTPUT] if self.facts.unknown_threshold is not None
                                     else [])

    def forward(self, inputs: torch.Tensor, data_samples: Optional[List[DataSample]] = None,
                mode: str = 'predict'):
        if mode != 'predict':
            raise ConfigError(f'An ONNX model only predicts (mode {mode!r} asked); train and '
                              'fine-tune the PyTorch checkpoint instead.')
        if tuple(inputs.shape[2:]) != self.input_size:
            raise ConfigError(
                f'{self.onnx_file!r} takes {self.input_size[0]}x{self.input_size[1]} images but '
                f'the test pipeline gives {inputs.shape[2]}x{inputs.shape[3]}; use the config '
                'it was exported with.')
        images = inputs.round().clamp_(0, 255).to(torch.uint8).contiguous().numpy()
        outputs = [torch.from_numpy(output).float()
                   for output in self.runtime.run_outputs(images, self.outputs)]
        logits = outputs[0]
        scores = F.softmax(logits, dim=1)
        labels = scores.argmax(dim=1, keepdim=True)
        samples = data_samples or [DataSample() for _ in range(len(scores))]
        for sample, score, label, sample_logits in zip(samples, scores, labels, logits):
            sample.set_pred_score(score).set_pred_label(label)
            sample.set_field(sample_logits, 'pred_logits', dtype=torch.Tensor)
        if len(outputs) > 1:
            for sample, unknown_score in zip(samples, outputs[1]):
                sample.set_field(unknown_score, 'pred_unknown_score', dtype=torch.Tensor)
        return samples
