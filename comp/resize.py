"""`comp resize`: a pre-resized copy of a competition's images, built in parallel and kept up to date.

JPEG decoding of 480x640 photos is what starves the GPU on Kaggle's 2-4 cores (../shared/PADDY.md, part 2).
Pillow's `draft` asks libjpeg to decode at 1/2, 1/4 or 1/8 scale directly, which is several times faster
than decoding fully and then shrinking, whenever the target is at most half the source."""
import shutil
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

from . import competition
from .errors import ConfigError
from .files import atomic_path, read_json, write_json
from .machine import cpus

RESIZED_DIR = 'resized'
MANIFEST = 'manifest.json'


def resized_path(workdir, size):
    """Where the copy with longest side `size` lives in the workspace."""
    return Path(workdir) / RESIZED_DIR / str(size)


def resize_image(src, dst, size, quality=90):
    """Write `src` shrunk so its longest side is `size` (never enlarged), decoding at reduced scale when possible."""
    from PIL import Image
    with Image.open(src) as im:
        w, h = im.size
        scale = min(1.0, size / max(w, h))
        new = (max(1, round(w * scale)), max(1, round(h * scale)))
        im.draft('RGB', new)  # libjpeg decodes at the smallest 1/2^k scale still >= `new`
        im = im.convert('RGB')
        if im.size != new: im = im.resize(new, Image.BILINEAR)
        with atomic_path(dst) as tmp: im.save(tmp, format='JPEG', quality=quality)


def _job(args):
    resize_image(*args)
    return args[1]


def resize(size=256, data=None, workdir='.', workers=None):
    """Make or update the pre-resized copy of the competition (`data`, by default the one recorded in `workdir`);
    return (path, number of images resized this time)."""
    comp = competition.find(data, workdir)
    if size < 16: raise ConfigError(f'--size {size} is too small: use e.g. 256')
    dest = resized_path(workdir, size)
    L = comp.layout
    man_f = dest / MANIFEST
    old = read_json(man_f) if man_f.exists() else {}
    if old.get('source') not in (None, str(comp.path)):
        raise ConfigError(f'{dest} was made from {old["source"]}: delete it, or resize in another folder')
    files = {}
    for d in (comp.train_path, comp.test_path):
        for f in d.rglob('*'):
            if f.suffix.lower() in competition.IMAGE_EXTS: files[f.relative_to(comp.path).as_posix()] = f
    seen = old.get('images', {})
    jobs, manifest = [], {}
    for rel, f in sorted(files.items()):
        st = f.stat()
        sig = [st.st_size, st.st_mtime_ns]
        manifest[rel] = sig
        if seen.get(rel) != sig or not (dest / rel).exists():
            (dest / rel).parent.mkdir(parents=True, exist_ok=True)
            jobs.append((f, dest / rel, size))
    workers = workers or cpus()
    if jobs:
        with ProcessPoolExecutor(workers) as ex: list(ex.map(_job, jobs, chunksize=16))
    for rel in set(seen) - set(files):  # images gone from the source
        (dest / rel).unlink(missing_ok=True)
    for f in (L.train_csv, L.sample_csv, L.solution_csv):
        if (comp.path / f).exists(): shutil.copy2(comp.path / f, dest / f)
    write_json(man_f, {'source': str(comp.path), 'size': size, 'images': manifest})
    return dest, len(jobs)


def usable(comp, workdir, resize_target):
    """The largest up-to-date pre-resized copy whose images are big enough for `resize_target` (h, w), or None."""
    root = Path(workdir) / RESIZED_DIR
    if not root.is_dir(): return None
    need = max(resize_target)
    # A portrait 480x640 photo shrunk to longest side S is S x 0.75S; its short side must still reach the target.
    for d in sorted((p for p in root.iterdir() if p.name.isdigit()), key=lambda p: int(p.name)):
        man = d / MANIFEST
        if not man.exists(): continue
        m = read_json(man)
        if m.get('source') != str(comp.path): continue
        short = int(d.name) * 0.75
        if short >= need and _fresh(comp, m): return d
    return None


def _fresh(comp, m):
    imgs = m.get('images', {})
    n = sum(1 for d in (comp.train_path, comp.test_path) for f in d.rglob('*') if f.suffix.lower() in competition.IMAGE_EXTS)
    return n == len(imgs)
