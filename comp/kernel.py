"""Where a Kaggle notebook finds its attached data (the competition, the weights dataset), and the install cell that
every notebook in nbs/ starts with. It only looks at folders: nothing here calls Kaggle."""
import os
from pathlib import Path

from . import zoo
from .files import read_json


def in_kaggle_notebook():
    """True inside a Kaggle notebook, where competition data is attached read-only under /kaggle/input."""
    return bool(os.environ.get('KAGGLE_KERNEL_RUN_TYPE'))


def input_roots(workdir='.'):
    """Where a Kaggle notebook finds attached data: `../input` from the working folder, and /kaggle/input."""
    return [Path(workdir).resolve().parent / 'input', Path('/kaggle/input')]


def attached(name, workdir='.'):
    """The competition's (or a dataset's) data as a Kaggle notebook attaches it, or None: `../input/NAME` from the
    working folder (fastkaggle's rule; /kaggle/working is the notebook's), or under /kaggle/input, or its
    competitions/ or datasets/OWNER/ folder."""
    for root in input_roots(workdir):
        for p in (root / name, root / 'competitions' / name, *sorted(root.glob(f'datasets/*/{name}'))):
            if p.is_dir(): return p
    return None


def _attached_holding(pattern, workdir='.'):
    # A dataset is found by what it holds, not its slug: a user may attach it under another name.
    for root in input_roots(workdir):
        for hit in sorted(root.glob(f'*/{pattern}')) + sorted(root.glob(f'datasets/*/*/{pattern}')):
            return hit.parent
    return None


def weights_dir(workdir='.'):
    """The attached weights dataset (`comp push-weights`, found by its manifest), or None."""
    return _attached_holding(zoo.WEIGHTS_MANIFEST, workdir)


def weights_for(arch, workdir='.'):
    """The attached weights dataset if it holds pretrained weights for `arch` (a recipe or timm name), else None."""
    d = weights_dir(workdir)
    if d is None: return None
    return d if zoo.recipe(arch).arch in read_json(d / zoo.WEIGHTS_MANIFEST).get('archs', {}) else None


# A notebook's first code cell after its parameters: it cannot import comp to find comp, so it is spelled out
# here once and the tests check that every notebook in nbs/ carries exactly this text.
INSTALL_CELL = """\
# On Kaggle: install comp, and the libraries Kaggle lacks, from the attached comp-lib dataset (no network needed).
import glob, importlib, os, subprocess, sys
wheels = sorted(glob.glob('../input/*/comp-*.whl') + glob.glob('/kaggle/input/*/comp-*.whl'))
if os.environ.get('KAGGLE_KERNEL_RUN_TYPE') and wheels:
    subprocess.run([sys.executable, '-m', 'pip', 'install', '-q', '--no-index', '--find-links',
                    os.path.dirname(wheels[0]), wheels[0]], check=True)
    importlib.invalidate_caches()"""
