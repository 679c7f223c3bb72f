# AdamW, plateau decay on validation top-1, gradient-norm clipping.
optim_wrapper = dict(
    # fused: one kernel for all parameters (on CPU 4x faster than the per-tensor loop)
    optimizer=dict(type='AdamW', lr=1e-3, weight_decay=1e-4, fused=True),
    clip_grad=dict(max_norm=1.0),
)

param_scheduler = dict(
    type='ReduceOnPlateauLR',
    # validation computes metrics, not a loss
    monitor='accuracy/top1',
    rule='greater',
    factor=0.2,
    patience=3,
    by_epoch=True,
    # Explicit: by default the Runner sets end=max_epochs and stores it in checkpoints,
    # so resuming with a larger max_epochs would silently stop the scheduler.
    end=1_000_000_000,
)

# MMEngine's epoch loop that can also resume inside an epoch (from a recovery checkpoint)
train_cfg = dict(type='ResumableEpochBasedTrainLoop', max_epochs=100, val_interval=1)
val_cfg = dict()
test_cfg = dict()

# Reference batch: 1 GPU x 64 images. `--auto-scale-lr` scales lr with the real batch.
auto_scale_lr = dict(base_batch_size=64)
