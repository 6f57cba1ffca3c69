"""Decode once: the deterministic item-level part of the pipeline (decode + resize) cached as uint8.

Each image is decoded and resized the first time it is read; later epochs and TTA passes read the uint8
tensor back from a memory-mapped file that the DataLoader's worker processes share. Random augmentation
stays on the batch (on the GPU when there is one). Imports fastai: load it only when building DataLoaders.

fastai's crop and pad resizes place the image at random in training. Where the image already has the
target's aspect ratio (Paddy's portrait photos for the pad and crop recipes) every placement gives the same
pixels, so those images are cached too; the others are resized anew in training from fastai's own draw."""
import atexit
import os
import shutil
import tempfile
from pathlib import Path

import numpy as np
import torch
from fastai.vision.all import PILImage, ResizeMethod, TensorImage, ToTensor, Transform

from .errors import ConfigError
from .machine import alive

ANY_SPLIT, VALID_ONLY = 1, 2   # what a cached slot may serve: every split, or validation's centred placement
PREFIX = 'comp-cache-'         # then the owner's pid: comp-cache-<pid>-<random>.u8
BUDGET_VAR, DIR_VAR = 'COMP_DECODE_CACHE_GB', 'COMP_DECODE_CACHE_DIR'
RENAMED = {'COMP_CACHE_GB': BUDGET_VAR, 'COMP_CACHE_DIR': DIR_VAR}


def budget():
    """Bytes of decoded images comp may hold (training cache, TTA): `COMP_DECODE_CACHE_GB`, else a quarter of memory."""
    for old, new in RENAMED.items():
        if old in os.environ: raise ConfigError(f'{old} is now called {new}: rename the variable')
    if BUDGET_VAR in os.environ:
        try: gb = float(os.environ[BUDGET_VAR])
        except ValueError: gb = -1
        if not gb >= 0: raise ConfigError(f'{BUDGET_VAR}={os.environ[BUDGET_VAR]!r}: use a number of GB such as 4, or 0 for no cache')
        return gb * 1024 ** 3
    try: return os.sysconf('SC_PAGE_SIZE') * os.sysconf('SC_PHYS_PAGES') / 4
    except (ValueError, OSError, AttributeError): return 4 * 1024 ** 3


def nbytes(resize, n):
    """Bytes of n uint8 images at the item resize's (h, w)."""
    h, w = resize[1]
    return n * 3 * h * w


def _gb(b): return f'{b / 1024 ** 3:.1f} GB' if b >= 1024 ** 3 else f'{b / 1024 ** 2:.1f} MB'


def plan(resize, n, wanted=True):
    """(folder, why): where the decode-once cache of n images goes, or (None, why it is off)."""
    if not wanted: return None, 'off (--no-cache)'
    # Data-parallel processes on this machine each hold a cache of every image (each epoch shuffles them anew
    # across the processes): they share the budget.
    share = max(1, int(os.environ.get('LOCAL_WORLD_SIZE') or 1))
    need, limit = nbytes(resize, n), budget() / share
    if need > limit:
        return None, (f'off: {_gb(need)} of images is over the {_gb(limit)} budget '
                      f'{f"(1/{share} each for {share} processes) " if share > 1 else ""}(set {BUDGET_VAR})')
    env, note = os.environ.get(DIR_VAR), ''
    if env and not os.path.isdir(env): note = f' ({DIR_VAR}={env} is not a folder: not used)'
    d = folder(need)
    if d is None: return None, f'off: no room for {_gb(need)} in {DIR_VAR}, /dev/shm or the temp folder{note}'
    return d, f'{_gb(need)} in {d}{note}'


def folder(size):
    """A folder with room for `size` bytes of cache: `COMP_DECODE_CACHE_DIR`, else /dev/shm (memory), else the temp
    folder; None if none has.

    The cache is a sparse memory-mapped file: one on a full tmpfs (Docker's /dev/shm is 64 MB) would kill
    the DataLoader workers with SIGBUS when they write into it, so the room is checked up front."""
    env = os.environ.get(DIR_VAR)
    # A COMP_DECODE_CACHE_DIR that is not a folder (mistyped, not mounted) falls back as an unset one does.
    for d in [env] if env and os.path.isdir(env) else ['/dev/shm', tempfile.gettempdir()]:
        try:
            if shutil.disk_usage(d).free >= size * 1.02 + 2 ** 20: return d
        except OSError:
            continue
    return None


def cache_of(dataset):
    """The decode-once cache (a CachedImage) among a fastai Datasets' transforms, or None."""
    for tl in getattr(dataset, 'tls', []):
        for t in tl.tfms.fs:
            if isinstance(t, CachedImage): return t
    return None


def release(dls):
    """Free the decode-once cache of `dls`, if it has one."""
    cache = cache_of(getattr(dls.train, 'dataset', None))
    if cache is not None: cache.close()


def _remove(*files):
    for f in files:
        try: os.unlink(f)
        except OSError: pass


def sweep(folder):
    """Remove the caches of processes that are gone: a killed run cannot remove its own, and in /dev/shm
    a left-over cache holds memory until the machine restarts."""
    for f in Path(folder).glob(PREFIX + '*'):
        pid = f.name[len(PREFIX):].split('-')[0]
        if pid.isdigit() and not alive(int(pid)): _remove(f)


class CachedImage(Transform):
    """path -> TensorImage (uint8, CHW) after `resize`, computed once per image and shared across workers."""

    def __init__(self, paths, resize, cache_dir=None):
        self.resize, self.to_tensor = resize, ToTensor()
        self.index = {str(p): i for i, p in enumerate(paths)}
        w, h = resize.size  # fastai's Resize keeps its size as (width, height)
        self.shape = (len(self.index), 3, int(h), int(w))
        folder = cache_dir or tempfile.gettempdir()
        sweep(folder)
        fd, self.file = tempfile.mkstemp(prefix=f'{PREFIX}{os.getpid()}-', suffix='.u8', dir=folder)
        os.close(fd)
        # A separate flag file: set only after the pixels are written, so a reader never sees half an image.
        self.flag_file = self.file + '.done'
        # fastai's learners hold reference cycles, which Python may never finalize at exit: remove the files then.
        atexit.register(_remove, self.file, self.flag_file)
        self.pixels = np.memmap(self.file, np.uint8, 'w+', shape=self.shape)
        self.done = np.memmap(self.flag_file, np.uint8, 'w+', shape=(max(1, self.shape[0]),))
        self.decodes_count, self.reads_count, self._owner, self.split, self._fixed = 0, 0, os.getpid(), None, {}

    def __getstate__(self):
        # Workers started by spawn or forkserver (Python 3.14's default on Linux) get the state pickled:
        # they must map the same files, not receive a private copy of every pixel.
        state = self.__dict__.copy()
        state['pixels'] = state['done'] = None
        return state

    def __setstate__(self, state):
        self.__dict__.update(state)
        if self.index and os.path.exists(self.file):
            self.pixels = np.memmap(self.file, np.uint8, 'r+', shape=self.shape)
            self.done = np.memmap(self.flag_file, np.uint8, 'r+', shape=(max(1, self.shape[0]),))

    def __call__(self, x, split_idx=None, **kwargs):
        self.split = split_idx  # 1 while fastai builds validation items: crops and pads are centred there
        return super().__call__(x, split_idx=split_idx, **kwargs)

    def placed(self, img, pcts):
        """fastai's Resize of `img` with the placement fractions `pcts`, drawing nothing."""
        self.resize.pcts = pcts
        return Transform.__call__(self.resize, img)

    def fixed(self, size):
        """Whether every placement of an image of `size` (w, h) gives the same pixels: the extreme placements
        of a probe whose every pixel differs from its neighbours are compared, once per size."""
        if size not in self._fixed:
            w, h = size
            y, x = np.mgrid[:h, :w]
            probe = PILImage.create(np.stack([x % 256, y % 256, x // 256 + 16 * (y // 256)], -1).astype(np.uint8))
            lo, hi = self.placed(probe, (0.0, 0.0)), self.placed(probe, (1 - 1e-9, 1 - 1e-9))
            self._fixed[size] = lo.tobytes() == hi.tobytes()
        return self._fixed[size]

    def load(self, path, pcts):
        """Decode and resize `path` with fastai's placement `pcts`; also whether every placement gives these pixels."""
        self.decodes_count += 1
        img = PILImage.create(path)
        if self.resize.method == ResizeMethod.Squish: return self.to_tensor(self.resize(img)), True
        return self.to_tensor(self.placed(img, pcts)), self.fixed(img.size)

    def encodes(self, path: (str, Path)):
        self.reads_count += 1  # in this process; with the decodes, what tests and benchmarks count
        training = self.split != 1
        # fastai's Resize draws its placement for every item in training; drawing it here too keeps the
        # random state, and so every later draw, exactly as in the uncached pipeline.
        self.resize.before_call(None, split_idx=self.split)
        pcts = getattr(self.resize, 'pcts', (0.5, 0.5))
        i = self.index.get(str(path))
        if i is not None and (self.done[i] == ANY_SPLIT or (self.done[i] == VALID_ONLY and not training)):
            return TensorImage(torch.from_numpy(np.array(self.pixels[i])))
        t, fixed = self.load(path, pcts)
        if i is not None and tuple(t.shape) == self.shape[1:] and (fixed or not training):
            self.pixels[i] = t.numpy()
            self.done[i] = ANY_SPLIT if fixed else VALID_ONLY
        return t

    def all_fixed(self, paths):
        """Whether every one of `paths` is cached for every split: read, and no placement changes its pixels."""
        slots = (self.index.get(str(p)) for p in paths)
        return all(i is not None and self.done[i] == ANY_SPLIT for i in slots)

    def close(self):
        """Give the memory back now: later reads decode again. fastai's learners hold reference cycles, so
        without this a finished run's cache would stay in /dev/shm until the garbage collector found it."""
        self.index, self.pixels, self.done = {}, None, None
        if os.getpid() == self._owner: _remove(self.file, self.flag_file)

    def __del__(self):
        # Worker processes share the files; only the process that made them removes them.
        if os.getpid() == getattr(self, '_owner', None): _remove(self.file, self.flag_file)
