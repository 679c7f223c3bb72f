"""bioplugin: fine-tune ResNeXt101 on folders of biological specimen photos with MMPretrain.

Importing the package registers its components into MMPretrain's registries; configs do it
with ``custom_imports = dict(imports=['bioplugin'], allow_failed_imports=False)``.
"""
import warnings

# mmcv-lite has no compiled ops; classification does not use this one.
warnings.filterwarnings('ignore', message='Fail to import ``MultiScaleDeformableAttention``')
# mmengine resolves `mmpretrain::` config bases with pkg_resources (setuptools<81 is pinned).
warnings.filterwarnings('ignore', message='pkg_resources is deprecated')
# Python >= 3.12 compiles MMPretrain's regex literals with a SyntaxWarning ('\d') on every
# import where no bytecode is cached, which would precede the tools' one-line errors.
warnings.filterwarnings('ignore', category=SyntaxWarning, module=r'.*[\\/]mmpretrain[\\/]')

from . import datasets, deploy, engine, evaluation, models  # noqa: E402,F401  (registration)
from .errors import BioPluginError  # noqa: E402

__version__ = '0.1.0'
__all__ = ['BioPluginError', '__version__']
