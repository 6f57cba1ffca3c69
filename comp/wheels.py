"""The library dataset's files: comp's wheel, and a wheel of each distribution comp needs that Kaggle's image lacks,
so a notebook with internet off can pip install comp. Built and fetched with pip; nothing here calls Kaggle."""
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

from .errors import KaggleError
from .files import state_dir

# Kaggle's GPU image has these, and all they depend on (the Jupyter kernel a notebook runs in too): carrying them
# would make the library dataset gigabytes, and pip keeps preinstalled builds that satisfy comp's requirements.
PREINSTALLED = ('torch', 'torchvision', 'fastai', 'timm', 'accelerate', 'pandas', 'scikit-learn', 'numpy', 'ipykernel')


def build_wheel(out):
    """Build comp's wheel into `out` (so a notebook with internet off can `pip install` it)."""
    root = Path(__file__).resolve().parent.parent
    r = subprocess.run([sys.executable, '-m', 'pip', 'wheel', '--no-deps', '--no-build-isolation', '-q', '-w', str(out), str(root)],
                       capture_output=True, text=True)
    wheels = list(Path(out).glob('comp-*.whl'))
    if r.returncode or not wheels: raise KaggleError(f'could not build comp\'s wheel: {r.stderr.strip().splitlines()[-1:]}')
    return wheels[0]


def _norm(name): return re.sub(r'[-_.]+', '-', name).lower()


def _closure(names):
    """{distribution: version} of the installed `names` and everything they require (markers evaluated)."""
    from importlib.metadata import PackageNotFoundError, distribution
    from packaging.requirements import Requirement
    seen, todo = {}, list(names)
    while todo:
        n = _norm(todo.pop())
        if n in seen: continue
        try: d = distribution(n)
        except PackageNotFoundError: continue
        seen[n] = d.version
        for r in d.requires or []:
            req = Requirement(r)
            if req.marker is None or req.marker.evaluate({'extra': ''}): todo.append(req.name)
    return seen


def carried():
    """{distribution: version} the library dataset carries: comp's requirements as installed here, with what they
    need, less what Kaggle's image has (PREINSTALLED and their requirements) and comp itself."""
    pre = _closure(PREINSTALLED)
    return {n: v for n, v in sorted(_closure(['comp']).items()) if n not in pre and n != 'comp'}


def wheel_cache():
    """Where downloaded wheels are kept between pushes: comp's cache folder."""
    return state_dir() / 'wheels'


def _wheel_in(folder, name, version):
    want = f'{_norm(name).replace("-", "_")}-{version}-'
    for f in sorted(Path(folder).glob('*.whl')) if folder and Path(folder).is_dir() else ():
        if f.name.lower().replace('.', '_').startswith(want.replace('.', '_')): return f
    return None


def library_files(out, wheelhouse=None):
    """comp's wheel and a wheel of each `carried()` distribution in `out`; the wheels come from `wheelhouse`
    (or $COMP_WHEELHOUSE), else the wheel cache, else `pip download` (PyPI) into the cache."""
    out = Path(out)
    build_wheel(out)
    houses = [h for h in (wheelhouse, os.environ.get('COMP_WHEELHOUSE'), wheel_cache()) if h]
    need = carried()
    find = lambda n, v: next((w for h in houses if (w := _wheel_in(h, n, v))), None)
    missing = [f'{n}=={v}' for n, v in need.items() if find(n, v) is None]
    if missing:
        cache = wheel_cache()
        cache.mkdir(parents=True, exist_ok=True)
        r = subprocess.run([sys.executable, '-m', 'pip', 'download', '--no-deps', '--only-binary=:all:', '-q',
                            '-d', str(cache), *missing], capture_output=True, text=True)
        if r.returncode:
            raise KaggleError(f'could not download the wheels of {", ".join(missing)} for the library dataset '
                              f'(pip: {(r.stderr.strip().splitlines() or ["failed"])[-1]}): check the network, '
                              'or pass a folder of them as COMP_WHEELHOUSE')
    for n, v in need.items():
        w = find(n, v)
        if w is None: raise KaggleError(f'no wheel of {n}=={v} for the library dataset: put one in COMP_WHEELHOUSE')
        shutil.copy(w, out / w.name)
    return sorted(out.glob('*.whl'))
