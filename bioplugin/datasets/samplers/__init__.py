from .balanced_sampler import ClassBalancedSampler

__all__ = ['ClassBalancedSampler']
