"""Grad-CAM heat maps on the last backbone stage, with the maintained ``grad-cam`` package."""
from typing import Sequence

import numpy as np
import pandas as pd
from mmengine.dataset import default_collate
from torch import nn

from ..apis.inference import ImageListDataset
from ..engine.precision import float32_nchw
from ..errors import ConfigError
from .plots import plot_image_grid


class _Logits(nn.Module):
    """The classifier as ``image tensor → logits``, the interface grad-cam expects."""

    def __init__(self, classifier):
        super().__init__()
        self.classifier = classifier

    def forward(self, inputs):
        return self.classifier(inputs, mode='tensor')


def _has_conv(module: nn.Module) -> bool:
    return any(isinstance(m, nn.Conv2d) for m in module.modules())


def last_backbone_stage(model) -> nn.Module:
    """The layer Grad-CAM explains: the last residual stage of an MMPretrain ResNet /
    ResNeXt backbone; on any other backbone (timm, torchvision, registered ones) the last of
    its parts that holds a convolution, looking through wrappers of one part (a timm model
    inside ``TIMMBackbone``) and into the stage lists of the rest (``blocks``, ``stages``).
    A convolution followed by parts with Linear layers (a transformer's patch embedding before
    its attention blocks) does not explain the decision: that backbone has no Grad-CAM layer,
    said in one sentence."""
    backbone = model.backbone
    if hasattr(backbone, 'res_layers'):
        return getattr(backbone, backbone.res_layers[-1])
    if not _has_conv(backbone):
        raise ConfigError(f'Grad-CAM needs a convolutional backbone; {type(backbone).__name__} '
                          'has no convolution layer to explain.')
    layer = backbone
    while True:
        children = list(layer.named_children())
        parts = [index for index, (_, child) in enumerate(children) if _has_conv(child)]
        if not parts:
            return layer  # a convolution itself
        name, last = children[parts[-1]]
        after = [child for _, child in children[parts[-1] + 1:]]
        if any(isinstance(m, nn.Linear) for child in after for m in child.modules()):
            raise ConfigError(
                f'Grad-CAM needs a convolutional backbone; the last convolution of '
                f'{type(backbone).__name__} ({name}) is followed by layers without one, so '
                'its maps would not explain the prediction.')
        if isinstance(last, (nn.Sequential, nn.ModuleList)):  # the stages: the last one
            stages = [child for child in last.children() if _has_conv(child)]
            return stages[-1] if stages else last
        if len(parts) > 1:
            return last
        layer = last  # a wrapper of one part


def most_confident_mistakes(predictions: pd.DataFrame, count: int = 8) -> pd.DataFrame:
    """Wrong predictions with the highest score; the least confident right ones if too few."""
    wrong = predictions[predictions.pred_label != predictions.gt_label]
    chosen = wrong.sort_values('score', ascending=False, kind='stable').head(count)
    if len(chosen) < count:
        right = predictions[predictions.pred_label == predictions.gt_label]
        chosen = pd.concat([chosen, right.sort_values('score', kind='stable')
                            .head(count - len(chosen))])
    return chosen


def pipeline_batch(image_paths: Sequence[str], pipeline_cfg) -> dict:
    """The images through a (test) pipeline, collated into one batch."""
    samples = ImageListDataset(list(image_paths), pipeline_cfg)
    return default_collate([samples[i] for i in range(len(samples))])


def rgb_images(batch: dict) -> list:
    """A batch's BGR uint8 images as RGB ``(H, W, 3)`` arrays: what the model sees."""
    return [np.ascontiguousarray(image.permute(1, 2, 0).numpy()[..., ::-1])
            for image in batch['inputs']]


def gradcam_overlays(classifier, image_paths: Sequence[str],
                     target_classes: Sequence[int]) -> list:
    """RGB uint8 images (as the model sees them) with the Grad-CAM map of each target class."""
    # imported here: pytorch-grad-cam loads SciPy and scikit-learn (over a second), which
    # every tool importing bioplugin.analysis would otherwise pay for
    from pytorch_grad_cam import GradCAM
    from pytorch_grad_cam.utils.image import show_cam_on_image
    from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget
    model = classifier.model
    if hasattr(model, 'module'):  # a TTA wrapper: explain the plain model
        model = model.module
    batch = pipeline_batch(image_paths, classifier.test_pipeline_cfg)
    inputs = model.data_preprocessor(batch, False)['inputs']
    overlays = []
    # gradients in float32 NCHW: oneDNN's channels-last backward is unsafe on CPU
    with float32_nchw(model, classifier.precision, classifier.device.type,
                      classifier.inference_layout), GradCAM(
            model=_Logits(model), target_layers=[last_backbone_stage(model)]) as cam:
        maps = cam(input_tensor=inputs,
                   targets=[ClassifierOutputTarget(int(c)) for c in target_classes])
    for rgb, heat in zip(rgb_images(batch), maps):
        overlays.append(show_cam_on_image(rgb.astype(np.float32) / 255, heat, use_rgb=True))
    return overlays


def explain_predictions(classifier, predictions: pd.DataFrame, count: int = 8):
    """Grid figure of Grad-CAM maps for the most confident mistakes in ``predictions``
    (columns ``image_path``, ``pred_label``, ``gt_label``, ``score``)."""
    chosen = most_confident_mistakes(predictions, count)
    index = {name: i for i, name in enumerate(classifier.classes)}
    overlays = gradcam_overlays(classifier, list(chosen.image_path),
                                [index[str(label)] for label in chosen.pred_label])
    titles = [f'{t} → {p} ({s:.2f})' for t, p, s in
              zip(chosen.gt_label, chosen.pred_label, chosen.score)]
    return plot_image_grid(overlays, titles, 'Grad-CAM on the last backbone stage '
                           '(true → predicted, score; the map explains the prediction)')
