"""A training loop the GPU never waits for: fastai's Learner.fit without a host-device sync per batch.

fastai reads something back from the GPU on every batch, and each read makes the CPU wait until the GPU has
finished all the work queued so far, so the CPU's Python for the next batch (loading, augmentation, kernel
launches) never overlaps the GPU's work on this one:
- the smoothed training loss (`AvgSmoothLoss`), the validation loss (`AvgLoss`) and each metric (`AvgMetric`)
  are moved to the CPU per batch, and the progress bar prints the smoothed loss per batch;
- batches are copied to the GPU with `non_blocking=False`, which waits for the GPU even from pinned memory;
- the batch augmentation reads values back too: `_grid_sample` reads the sampling grid's extent (`.item()`,
  twice a batch: the affine warp and the random crop), the perspective warp tests its grid (`if (...).any()`)
  and solves its 8x8 systems with `torch.linalg.solve`, which checks the result on the CPU.
`sync_free(learn)` replaces each with the same computation kept on the device: the Recorder's losses and
metrics mean what they meant (device values are read at the end of an epoch or fit, and by the progress bar
at most every `every` seconds), the augmented batches are equal to fastai's for the same random draws, and
batches are copied without blocking, from a side CUDA stream so the copy overlaps the previous batch's work.

Still syncing, by design: fp16's GradScaler reads its overflow flag every step (bf16 needs no scaler), and
lr_find compares the smoothed loss every batch to stop early. Imports fastai: load it only when training."""
import math
import time
from functools import partial

import torch
import torch.nn.functional as F
from fastai.callback.core import Callback
from fastai.callback.progress import ProgressCallback
from fastai.data.load import _loaders
from fastai.learner import AvgLoss, AvgMetric, AvgSmoothLoss
from fastai.torch_core import TensorImage, TensorMask, to_detach, to_device
from fastai.vision.core import TensorBBox, TensorPoint
from fastai.vision.augment import (AffineCoordTfm, PadMode, RandomResizedCropGPU, RandTransform, _WarpCoord,
                                   _init_mat, affine_grid)
from fasttransform.transform import compose_tfms


# ---- losses and metrics that stay on the device ----------------------------------------------------------

class DeviceSmoothLoss(AvgSmoothLoss):
    """fastai's smoothed loss (the same lerp), kept on the loss's device instead of moved to the CPU per batch."""

    def accumulate(self, learn):
        self.count += 1
        loss = to_detach(learn.loss.mean(), cpu=False)
        self.val = torch.lerp(loss, self.val.to(loss.device), self.beta)


class DeviceAvgLoss(AvgLoss):
    """fastai's batch-size-weighted validation loss, summed on the device."""

    def accumulate(self, learn):
        bs = _bs(learn)
        self.total += learn.to_detach(learn.loss.mean(), cpu=False) * bs
        self.count += bs


class DeviceAvgMetric(AvgMetric):
    """fastai's batch-size-weighted metric average (what a plain metric function becomes), summed on the device."""

    def accumulate(self, learn):
        bs = _bs(learn)
        self.total += learn.to_detach(self.func(learn.pred, *learn.yb), cpu=False) * bs
        self.count += bs


def _bs(learn):
    from fastai.torch_core import find_bs
    return find_bs(learn.yb)


class HostLosses(Callback):
    """Moves the Recorder's per-batch smoothed losses (device tensors) to the CPU once per epoch and at the end
    of a fit, so `recorder.losses` holds CPU scalars as in fastai (lr_find and plot_loss read them after a fit)."""
    order = 55  # after the Recorder's after_batch

    def before_fit(self): self.done = 0

    def _host(self):
        rec = getattr(self.learn, 'recorder', None)
        if rec is None or not hasattr(rec, 'losses'): return
        new = rec.losses[self.done:]
        if new and any(getattr(v, 'device', torch.device('cpu')).type != 'cpu' for v in new):
            rec.losses[self.done:] = list(torch.stack([torch.as_tensor(v) for v in new]).cpu().unbind())
        self.done = len(rec.losses)

    def after_train(self): self._host()
    def after_cancel_train(self): self._host()
    def after_fit(self): self._host()


class ThrottledProgress(ProgressCallback):
    """fastai's progress bars, with the smoothed loss read back from the GPU at most every `every` seconds."""
    _name = 'progress'  # still `learn.progress`, as fastai's own no_bar() expects

    def __init__(self, every=0.5): self.every, self.shown = every, -math.inf

    def after_batch(self):
        self.pbar.update(self.iter + 1)
        now = time.monotonic()
        if hasattr(self, 'smooth_loss') and (now - self.shown >= self.every or self.iter + 1 == len(self.dl)):
            self.pbar.comment, self.shown = f'{float(self.smooth_loss):.4f}', now


# ---- batches copied without blocking -----------------------------------------------------------------------

class DeviceFeed(Callback):
    """Each epoch's DataLoader copies its batches without blocking: from pinned memory, on a side CUDA stream
    that the training stream then waits for, so the copy of the next batch overlaps the GPU's work on this one.
    Batches come in fastai's order with fastai's random draws: nothing is fetched early."""
    order = -20  # before every callback that looks at `learn.dl`

    def before_train(self): self._wrap()
    def before_validate(self): self._wrap()

    def _wrap(self):
        from fastai.data.load import DataLoader
        if isinstance(self.learn.dl, DataLoader): self.learn.dl = _DeviceLoader(self.learn.dl)


class _DeviceLoader:
    """A fastai DataLoader iterated as its own `__iter__` does, except for the copy to the device."""

    def __init__(self, dl):
        self.dl = dl
        dev = dl.device
        self.stream = torch.cuda.Stream(dev) if dev is not None and dev.type == 'cuda' else None

    def __len__(self): return len(self.dl)

    def __getattr__(self, name):
        if name == 'dl': raise AttributeError(name)
        return getattr(self.dl, name)

    def __iter__(self):
        # The lines of fastai.data.load.DataLoader.__iter__ (fastai 2.8): only `to_device` is replaced.
        dl = self.dl
        dl.randomize()
        dl.before_iter()
        dl._DataLoader__idxs = dl.get_idxs()  # what DataLoader.sample reads, set in the main process
        for b in _loaders[dl.fake_l.num_workers == 0](dl.fake_l):
            if dl.pin_memory and type(b) == list: b = tuple(b)
            if dl.device is not None: b = self._copy(b, dl.device)
            yield dl.after_batch(b)
        dl.after_iter()
        if hasattr(dl, 'it'): del dl.it

    def _copy(self, b, device):
        if self.stream is None: return to_device(b, device, non_blocking=True)
        main = torch.cuda.current_stream(device)
        with torch.cuda.stream(self.stream):
            b = to_device(b, device, non_blocking=True)
        main.wait_stream(self.stream)
        # Memory allocated on the side stream is used on the main one: keep it until that use is done.
        for t in _tensors(b): t.record_stream(main)
        return b


def _tensors(b):
    if isinstance(b, torch.Tensor): yield b
    elif isinstance(b, (list, tuple)):
        for o in b: yield from _tensors(o)
    elif isinstance(b, dict):
        for o in b.values(): yield from _tensors(o)


# ---- fastai's batch augmentation without reads back to the CPU ---------------------------------------------

def grid_sample(x, coords, mode='bilinear', padding_mode='reflection', align_corners=None):
    """fastai's `_grid_sample`, which reads the grid's extent back from the device (`.item()`) on every call,
    though only a resize down by more than 2x (d > 1) can use it: here it is read only then."""
    if mode == 'bilinear':
        d = min(x.shape[-2] / coords.shape[-2], x.shape[-1] / coords.shape[-1]) / 2
        if d > 1:
            mn, mx = coords.min(), coords.max()
            z = 1 / (mx - mn).item() * 2
            if d > z: x = F.interpolate(x, scale_factor=1 / d, mode='area', recompute_scale_factor=True)
    return F.grid_sample(x, coords, mode=mode, padding_mode=padding_mode, align_corners=align_corners)


def affine_coord(x, mat=None, coord_tfm=None, sz=None, mode='bilinear', pad_mode=PadMode.Reflection,
                 align_corners=True):
    """fastai's `TensorImage.affine_coord` with `grid_sample` above."""
    if mat is None and coord_tfm is None and sz is None: return x
    size = tuple(x.shape[-2:]) if sz is None else (sz, sz) if isinstance(sz, int) else tuple(sz)
    if mat is None: mat = _init_mat(x)[:, :2]
    coords = affine_grid(mat, x.shape[:2] + size, align_corners=align_corners)
    if coord_tfm is not None: coords = coord_tfm(coords)
    return TensorImage(grid_sample(x, coords, mode=mode, padding_mode=pad_mode, align_corners=align_corners))


def find_coeffs(p1, p2):
    """fastai's `find_coeffs` (the perspective warp's 8 coefficients from 4 point pairs): the same matrix, built
    in a few batched ops instead of 16 stacks, and solved by `solve_ex`, which skips `solve`'s check on the CPU."""
    n = p1.shape[0]
    one, zero = torch.ones_like(p1[:, :, 0]), torch.zeros_like(p1[:, :, 0])
    x2, y2 = p2[:, :, 0], p2[:, :, 1]
    rx = torch.stack([x2, y2, one, zero, zero, zero, -p1[:, :, 0] * x2, -p1[:, :, 0] * y2], dim=-1)
    ry = torch.stack([zero, zero, zero, x2, y2, one, -p1[:, :, 1] * x2, -p1[:, :, 1] * y2], dim=-1)
    A = torch.stack([rx, ry], dim=2).reshape(n, 8, 8)   # rows in fastai's order: x0, y0, x1, y1, ...
    return torch.linalg.solve_ex(A, p1.reshape(n, 8, 1))[0]


def apply_perspective(coords, coeffs):
    """fastai's `apply_perspective` without its `if (...).any()`: where a point maps to infinity the whole grid is
    left unwarped, as there, chosen on the device."""
    sz = coords.shape
    coords = coords.view(sz[0], -1, 2)
    coeffs = torch.cat([coeffs, torch.ones_like(coeffs[:, :1])], dim=1).view(coeffs.shape[0], 3, 3)
    coords1 = coords @ coeffs[..., :2].transpose(1, 2) + coeffs[..., 2].unsqueeze(1)
    warped = (coords1 / coords1[..., 2].unsqueeze(-1))[..., :2]
    return torch.where((coords1[..., 2] == 0.).any(), coords[..., :2], warped).view(*sz)


def _coord_func(fs, reverse):
    """The coordinate transforms of an AffineCoordTfm: fastai's warp done by the functions above."""
    def warp(wc, x, invert=False):
        coeffs = find_coeffs(wc.targ_pts, wc.orig_pts) if invert else find_coeffs(wc.orig_pts, wc.targ_pts)
        return apply_perspective(x, coeffs)
    fs = [partial(warp, f) if type(f) is _WarpCoord else f for f in fs]
    return partial(compose_tfms, tfms=fs, reverse=reverse)


class SyncFreeAffine(RandTransform):
    """A fastai AffineCoordTfm (flip, rotate, zoom and warp composed by `aug_transforms`), applied to images
    without reads back to the CPU; its own random draws, matrices and results. Masks and points use fastai's."""

    def __init__(self, tfm):
        super().__init__()
        # fastai's before_call sets the transform's split_idx to each call's: it applies to every split.
        self.tfm, self.order, self.split_idx = tfm, tfm.order, None

    def before_call(self, b, split_idx):
        self.tfm.before_call(b, split_idx)
        self.do = self.tfm.do

    def encodes(self, x: TensorImage):
        t = self.tfm
        coords = None if len(t.coord_fs) == 0 or t.split_idx else _coord_func(t.coord_fs, False)
        return affine_coord(x, t.mat, coords, sz=t.size, mode=t.mode, pad_mode=t.pad_mode, align_corners=t.align_corners)

    def encodes(self, x: TensorMask | TensorPoint | TensorBBox): return self.tfm.encodes(x)


class SyncFreeCrop(RandTransform):
    """fastai's RandomResizedCropGPU (its own draws and crop) resized without reads back to the CPU."""

    def __init__(self, tfm):
        super().__init__()
        self.tfm, self.order, self.split_idx = tfm, tfm.order, tfm.split_idx

    def before_call(self, b, split_idx):
        self.tfm.before_call(b, split_idx)
        self.do = self.tfm.do

    def encodes(self, x: TensorImage):
        t = self.tfm
        x = x[..., t.tl[0]:t.tl[0] + t.cp_size[0], t.tl[1]:t.tl[1] + t.cp_size[1]]
        return affine_coord(x, sz=t.size, mode=t.mode)

    def encodes(self, x: TensorMask | TensorPoint | TensorBBox): return self.tfm.encodes(x)


def sync_free_tfms(tfms, memo=None):
    """The batch transforms with fastai's affine warp and random resized crop replaced by their sync-free
    equivalents (same draws, equal results); others unchanged. With one `memo` dict over several lists, a
    transform they share stays shared."""
    memo = {} if memo is None else memo
    def one(t):
        if isinstance(t, (SyncFreeAffine, SyncFreeCrop)): return t
        if id(t) not in memo:
            memo[id(t)] = (SyncFreeAffine(t) if isinstance(t, AffineCoordTfm) else
                           SyncFreeCrop(t) if type(t) is RandomResizedCropGPU else t)
        return memo[id(t)]
    return [one(t) for t in tfms]


def _sync_free_dls(dls):
    from fastcore.foundation import L
    memo = {}
    for dl in dls.loaders:
        dl.after_batch.fs = L(sync_free_tfms(dl.after_batch.fs, memo))


# ---- the learner ----------------------------------------------------------------------------------------

def sync_free(learn, every=0.5):
    """Let the CPU run ahead of the GPU in `learn.fit`: no read back to the CPU per batch (see the module's doc).

    Losses, metrics, the Recorder's records and the augmented batches stay equal to fastai's for the same seed.
    `every`: the most often, in seconds, that a progress bar reads the smoothed loss. Returns `learn`."""
    rec = learn.recorder
    if not isinstance(rec.smooth_loss, DeviceSmoothLoss): rec.smooth_loss = DeviceSmoothLoss(beta=rec.smooth_loss.beta)
    if type(rec.loss) is AvgLoss: rec.loss = DeviceAvgLoss()
    learn.metrics = [DeviceAvgMetric(m.func) if type(m) is AvgMetric else m for m in learn.metrics]
    bars = [cb for cb in learn.cbs if type(cb) is ProgressCallback]
    if bars:
        learn.remove_cbs(bars)
        learn.add_cb(ThrottledProgress(every))
    for cls in (HostLosses, DeviceFeed):
        if not any(isinstance(cb, cls) for cb in learn.cbs): learn.add_cb(cls())
    _sync_free_dls(learn.dls)
    return learn
