# Ablation on the demo config: plankton_cpu_cosine, and Mixup / CutMix (one of the two per
# batch) on the training batches (docs/small-data.md).
_base_ = ['./plankton_cpu_cosine.py']

model = dict(train_cfg=dict(augments=[dict(type='Mixup', alpha=0.2),
                                      dict(type='CutMix', alpha=1.0)]))
