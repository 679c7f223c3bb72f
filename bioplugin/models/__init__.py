from .heads import BioClsHead

__all__ = ['BioClsHead']
