# bio_tiny with bio_resnext_plus's change (tests/test_plus_recipe.py checks it is the same) and
# Mixup / CutMix batches: the stronger recipe, and the batch augmentations it was chosen
# against, end to end on the tiny ResNet in seconds.
_base_ = ['./bio_tiny.py']

model = dict(
    head=dict(classifier_std=0.01),
    train_cfg=dict(augments=[dict(type='Mixup', alpha=0.2), dict(type='CutMix', alpha=1.0)]),
)
