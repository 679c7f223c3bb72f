# Ablation of bio_resnext_plus on the demo config: the last Linear layer from N(0, 0.01²).
_base_ = ['../bio_resnext50_plankton_cpu.py']

model = dict(head=dict(classifier_std=0.01))
