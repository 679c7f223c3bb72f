from typing import List, Optional, Sequence, Tuple

import torch
from torch import nn

from mmpretrain.models.heads import ClsHead
from mmpretrain.registry import MODELS
from mmpretrain.structures import DataSample


@MODELS.register_module()
class BioClsHead(ClsHead):
    """Two-layer classifier head of the bio_resnext recipe.

    ``Dropout(0.3) → Linear(in, 512) → ReLU → BatchNorm1d(512) → Dropout(0.5) → Linear(512, C)``,
    Linear layers Kaiming-normal (fan_out, relu) with zero bias. With ``classifier_std`` (the
    recipe: 0.01) the last Linear layer (the logits) is drawn from N(0, classifier_std²)
    instead, so training starts at a loss of ln C; ``None`` keeps Kaiming fan-out there, which
    gives logits with a standard deviation near 9 and a first loss near 20 (docs/small-data.md
    measures both). ``pre_logits`` returns the
    512-d normalised feature; ``predict`` also keeps it and the logits on each sample
    (``pred_feature``, ``pred_logits``) for the "not one of my classes" score
    (:mod:`bioplugin.evaluation.unknown_score`). BatchNorm1d needs ``drop_last=True`` in the
    train dataloader::

        model = dict(head=dict(
            _delete_=True, type='BioClsHead', num_classes=100, in_channels=2048,
            classifier_std=0.01,
            loss=dict(type='LabelSmoothLoss', label_smooth_val=0.1, mode='original'),
            topk=(1, 5)))
    """

    def __init__(self,
                 num_classes: int,
                 in_channels: int,
                 hidden_channels: int = 512,
                 dropout: Sequence[float] = (0.3, 0.5),
                 init_cfg: Optional[dict] = dict(
                     type='Kaiming', layer='Linear', mode='fan_out',
                     nonlinearity='relu', distribution='normal', bias=0),
                 classifier_std: Optional[float] = None,
                 **kwargs):
        super().__init__(init_cfg=init_cfg, **kwargs)
        if num_classes <= 0:
            raise ValueError(f'num_classes={num_classes} must be a positive integer')
        if classifier_std is not None and not classifier_std > 0:
            raise ValueError(f'classifier_std={classifier_std} must be a positive number or None')
        self.classifier_std = classifier_std
        self.num_classes = num_classes
        self.in_channels = in_channels
        self.layers = nn.Sequential(
            nn.Dropout(dropout[0]),
            nn.Linear(in_channels, hidden_channels),
            nn.ReLU(inplace=True),
            nn.BatchNorm1d(hidden_channels),
            nn.Dropout(dropout[1]),
            nn.Linear(hidden_channels, num_classes),
        )

    def init_weights(self) -> None:
        """``init_cfg``, then the last Linear layer from N(0, classifier_std²), bias 0."""
        super().init_weights()
        if self.classifier_std is not None:
            classifier = self.layers[-1]
            nn.init.normal_(classifier.weight, std=self.classifier_std)
            nn.init.zeros_(classifier.bias)

    def pre_logits(self, feats: Tuple[torch.Tensor]) -> torch.Tensor:
        """The 512-d feature after BatchNorm1d, from the last backbone stage."""
        feature = feats[-1]
        with torch.autocast(feature.device.type, enabled=False):
            return self.layers[:4](feature.float())

    def logits_and_feature(self, feats: Tuple[torch.Tensor]) -> Tuple[torch.Tensor,
                                                                       torch.Tensor]:
        """``(logits, 512-d feature)``, both float32 even under bfloat16/float16 autocast:
        the head costs next to nothing, and bfloat16 logits (8-bit mantissa) would tie close
        classes."""
        feature = self.pre_logits(feats)
        with torch.autocast(feature.device.type, enabled=False):
            return self.layers[4:](feature), feature

    def forward(self, feats: Tuple[torch.Tensor]) -> torch.Tensor:
        return self.logits_and_feature(feats)[0]

    def predict(self, feats: Tuple[torch.Tensor],
                data_samples: Optional[List[Optional[DataSample]]] = None) -> List[DataSample]:
        """MMPretrain's prediction (``pred_score``, ``pred_label``) plus ``pred_logits`` and
        ``pred_feature`` per sample."""
        logits, feature = self.logits_and_feature(feats)
        samples = self._get_predictions(logits, data_samples)
        for sample, sample_logits, sample_feature in zip(samples, logits.detach(),
                                                         feature.detach()):
            sample.set_field(sample_logits, 'pred_logits', dtype=torch.Tensor)
            sample.set_field(sample_feature, 'pred_feature', dtype=torch.Tensor)
        return samples
