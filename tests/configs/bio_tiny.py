# The bio_resnext recipe (pipelines included) on a tiny ResNet: end-to-end tests in seconds.
_base_ = ['../../configs/bio_resnext.py']

data_root = 'data/tiny'

model = dict(
    backbone=dict(_delete_=True, type='ResNet', depth=18, stem_channels=8, base_channels=8,
                  out_indices=(3, )),
    head=dict(num_classes=3, in_channels=64, hidden_channels=16, topk=(1, )),
)

loader = dict(batch_size=4, num_workers=0, persistent_workers=False)
train_dataloader = dict(**loader)
val_dataloader = dict(**loader)
test_dataloader = dict(**loader)

train_cfg = dict(max_epochs=2)
# every epoch checkpointed: the resume tests kill runs at chosen epochs
default_hooks = dict(logger=dict(interval=1), checkpoint=dict(min_seconds_between_saves=0))
