# bio_tiny without randomness inside a training step: BatchNorm on its running statistics,
# a linear head, no augmentation. One step of 1 x 8 images and of 2 x 4 images must agree.
_base_ = ['./bio_tiny.py']

model = dict(
    backbone=dict(norm_eval=True),
    head=dict(_delete_=True, type='LinearClsHead', num_classes=4, in_channels=64,
              loss=dict(type='LabelSmoothLoss', label_smooth_val=0.1, mode='original'),
              topk=(1, )),
)
train_dataloader = dict(dataset=dict(pipeline={{_base_.test_pipeline}}))
train_cfg = dict(max_epochs=1)
custom_hooks = [dict(type='ParameterCountHook')]
# float32: the comparison is about gradient averaging, not bfloat16 rounding
precision = 'fp32'
