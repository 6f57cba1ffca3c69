"""Where a Kaggle notebook finds its attached data (the competition, the weights dataset), and the install cell that
every notebook in nbs/ starts with. It only looks at folders: nothing here calls Kaggle."""
import glob
import os
from pathlib import Path

from . import zoo
from .files import read_json


def in_kaggle_notebook():
    """True inside a Kaggle notebook, where competition data is attached read-only under /kaggle/input."""
    return bool(os.environ.get('KAGGLE_KERNEL_RUN_TYPE'))


# Where a notebook finds attached data: `../input` from its working folder (fastkaggle's rule; /kaggle/working is the
# notebook's), and /kaggle/input. A dataset lies under a root as SLUG/ or datasets/OWNER/SLUG/. The install cell
# (which cannot import comp to find comp) is built from these same tuples.
INPUT_ROOTS = ('../input', '/kaggle/input')
DATASET_DIRS = ('*', 'datasets/*/*')


def input_roots(workdir='.'):
    """Where a Kaggle notebook finds attached data (INPUT_ROOTS), as absolute paths from the working folder."""
    base = Path(workdir).resolve()
    return [Path(os.path.normpath(base / r)) for r in INPUT_ROOTS]


def attached_globs(pattern):
    """Glob patterns, from the working folder and in the order searched, for a file `pattern` in any attached dataset."""
    return [f'{root}/{d}/{pattern}' for root in INPUT_ROOTS for d in DATASET_DIRS]


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
    base = glob.escape(str(Path(workdir).resolve()))
    for g in attached_globs(pattern):
        hits = sorted(glob.glob(os.path.join(base, g)))   # an absolute g stays itself
        if hits: return Path(os.path.normpath(hits[0])).parent
    return None


def weights_dir(workdir='.'):
    """The attached weights dataset (`comp push-weights`, found by its manifest), or None."""
    return _attached_holding(zoo.WEIGHTS_MANIFEST, workdir)


def runs_dir(workdir='.'):
    """Attached runs to predict with, or None: a dataset from `comp push-runs` (found by its manifest), else another
    notebook's output attached as a kernel source (its working folder: runs/ with a run's config in it)."""
    from .bundle import MANIFEST
    from .runs import RUNS_DIR
    found = _attached_holding(MANIFEST, workdir)
    if found is not None: return found
    run = _attached_holding(f'{RUNS_DIR}/*/config.json', workdir)   # runs/<run>/config.json
    return run.parent.parent if run is not None else None


def weights_for(arch, workdir='.'):
    """The attached weights dataset if it holds pretrained weights for `arch` (a recipe or timm name), else None."""
    d = weights_dir(workdir)
    if d is None: return None
    return d if zoo.recipe(arch).arch in read_json(d / zoo.WEIGHTS_MANIFEST).get('archs', {}) else None


# A notebook's first code cell after its parameters: it cannot import comp to find comp, so it is spelled out
# here once (its search built from INPUT_ROOTS and DATASET_DIRS, as attached_globs is) and the tests check that every
# notebook in nbs/ carries exactly this text.
INSTALL_CELL = f"""\
# On Kaggle: install comp, and the libraries Kaggle lacks, from the attached comp-lib dataset (no network needed).
import glob, importlib.util, os, subprocess, sys
patterns = [f'{{root}}/{{d}}/comp-*.whl' for root in {INPUT_ROOTS!r} for d in {DATASET_DIRS!r}]
wheels = [w for p in patterns for w in sorted(glob.glob(p))]
if os.environ.get('KAGGLE_KERNEL_RUN_TYPE') and wheels:
    subprocess.run([sys.executable, '-m', 'pip', 'install', '-q', '--no-index', '--find-links',
                    os.path.dirname(wheels[0]), wheels[0]], check=True)
    importlib.invalidate_caches()
elif os.environ.get('KAGGLE_KERNEL_RUN_TYPE') and importlib.util.find_spec('comp') is None:
    print('comp is not installed, and no attached dataset holds its wheel (looked for ' + ', '.join(patterns) +
          '): attach the comp-lib dataset that `comp push-notebook` pushes (Add Input > Your Work > Datasets)')"""


def set_parameter(nb, name, value):
    """Write `nb` (a notebook file) with its parameters cell's `name = ...` line set to `value` (a Python literal);
    return whether the notebook has that parameter. The notebooks' competition is set this way when pushed."""
    import json
    import re
    book = json.loads(Path(nb).read_text())
    found = False
    for cell in book['cells']:
        if 'parameters' not in cell.get('metadata', {}).get('tags', []): continue
        src = ''.join(cell['source']) if isinstance(cell['source'], list) else cell['source']
        new, n = re.subn(rf'(?m)^{name} = [^#\n]*?(\s*#.*)?$', lambda m: f'{name} = {value!r}' + (m.group(1) or ''), src)
        if n: cell['source'], found = new.splitlines(keepends=True), True
    if found: Path(nb).write_text(json.dumps(book, indent=1, ensure_ascii=False) + '\n')
    return found
