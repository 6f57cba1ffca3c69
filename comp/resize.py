"""`comp resize`: a pre-resized copy of a competition's images, built in parallel and kept up to date.

JPEG decoding of 480x640 photos is what starves the GPU on Kaggle's 2-4 cores ("Road to the Top", part 2).
Pillow's `draft` asks libjpeg to decode at 1/2, 1/4 or 1/8 scale directly, which is several times faster
than decoding fully and then shrinking, whenever the target is at most half the source."""
import shutil
from contextlib import nullcontext
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

from . import competition
from .errors import ConfigError
from .files import atomic_path, read_json, write_json
from .layout import IMAGE_EXTS
from .machine import cpus

RESIZED_DIR = 'resized'
MANIFEST = 'manifest.json'
CHUNK = 128   # images per worker between two writes of the manifest


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
    # Every check before the first folder is made: a refused resize leaves nothing behind.
    if size < 16: raise ConfigError(f'--size {size} is too small: use e.g. 256')
    if workers is not None and workers < 1:
        raise ConfigError(f'--workers {workers}: use 1 or more processes, or leave it out for one per CPU core')
    comp = competition.find(data, workdir)
    dest = resized_path(workdir, size)
    if any(dest.resolve().is_relative_to(d) for d in (comp.train_path, comp.test_path)):
        raise ConfigError(f'{dest} is inside the images of {comp.path}, where it would be taken for theirs: run '
                          'comp resize in a workspace outside them')
    L = comp.layout
    man_f = dest / MANIFEST
    old = read_json(man_f) if man_f.exists() else {}
    if old.get('source') not in (None, str(comp.path)):
        raise ConfigError(f'{dest} was made from {old["source"]}: delete it, or resize in another folder')
    files = _sources(comp)
    seen = old.get('images', {})
    jobs, manifest = [], {}
    for rel, (f, sig) in sorted(files.items()):
        if seen.get(rel) == sig and (dest / rel).exists(): manifest[rel] = sig
        else:
            (dest / rel).parent.mkdir(parents=True, exist_ok=True)
            jobs.append((f, dest / rel, size, sig))
    for rel in set(seen) - set(files):  # images gone from the source
        (dest / rel).unlink(missing_ok=True)
    for f in (L.train_csv, L.sample_csv, L.solution_csv, L.test_csv):
        if f and (comp.path / f).exists(): shutil.copy2(comp.path / f, dest / f)
    record = lambda: write_json(man_f, {'source': str(comp.path), 'size': size, 'images': manifest})
    record()
    workers = workers or cpus()
    # The manifest is written as the work goes, so a killed resize redoes only the images it had not done.
    step = CHUNK * workers
    with ProcessPoolExecutor(workers) if jobs else nullcontext() as ex:
        for k in range(0, len(jobs), step):
            chunk = jobs[k:k + step]
            list(ex.map(_job, [j[:3] for j in chunk], chunksize=16))
            for f, dst, _, sig in chunk: manifest[dst.relative_to(dest).as_posix()] = sig
            record()
    return dest, len(jobs)


def _sources(comp):
    """rel path -> (file, [size, mtime_ns]) for every image of the competition."""
    out = {}
    for d in (comp.train_path, comp.test_path):
        for f in d.rglob('*'):
            if f.suffix.lower() in IMAGE_EXTS:
                st = f.stat()
                out[f.relative_to(comp.path).as_posix()] = (f, [st.st_size, st.st_mtime_ns])
    return out


def stale(comp, copy):
    """The images of `comp` that the copy at `copy` lacks or made from other bytes (size or mtime differ), as
    relative paths; every image when the copy has no manifest."""
    man = Path(copy) / MANIFEST
    m = read_json(man) if man.exists() else {}
    imgs = m.get('images', {}) if m.get('source') == str(comp.path) else {}
    return sorted(rel for rel, (_, sig) in _sources(comp).items() if imgs.get(rel) != sig)


def usable(comp, workdir, resize_target, notes=None):
    """The smallest up-to-date pre-resized copy whose images are big enough for `resize_target` (h, w), or None.

    A copy whose images no longer match their sources (changed, added or moved since `comp resize`) is never
    used: why goes to `notes` (a list), if given."""
    root = Path(workdir) / RESIZED_DIR
    if not root.is_dir(): return None
    need = max(resize_target)
    # A portrait 480x640 photo shrunk to longest side S is S x 0.75S; its short side must still reach the target.
    for d in sorted((p for p in root.iterdir() if p.name.isdigit()), key=lambda p: int(p.name)):
        man = d / MANIFEST
        if not man.exists() or int(d.name) * 0.75 < need: continue
        if read_json(man).get('source') != str(comp.path): continue
        old = stale(comp, d)
        if not old: return d
        if notes is not None:
            notes.append(f'not using the pre-resized copy {d}: {len(old)} image{"s" * (len(old) > 1)} changed, added or '
                         f'moved since it was made ({competition.few(old, 2)}); run `comp resize --size {d.name}` to '
                         'bring it up to date')
    return None
