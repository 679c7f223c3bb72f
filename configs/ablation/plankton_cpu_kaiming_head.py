# Ablation on the demo config: the head's last Linear layer Kaiming fan-out, as the original
# training script drew it, instead of the recipe's N(0, 0.01²) (docs/small-data.md).
_base_ = ['../bio_resnext50_plankton_cpu.py']

model = dict(head=dict(classifier_std=None))
