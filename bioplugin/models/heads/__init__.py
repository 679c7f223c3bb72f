from .bio_cls_head import BioClsHead

__all__ = ['BioClsHead']
