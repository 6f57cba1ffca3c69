"""Test-time augmentation that decodes each image once, with the same result as fastai's `Learner.tta`.

fastai's TTA runs n augmented passes plus one plain pass over the DataLoader, decoding every JPEG n+1
times. Here the item-level output (decoded and resized, uint8) is collected once and the batch-level
augmentations, where all of TTA's randomness lives for squish resizes, run n times over it. fastai crops
and places padded images at random per pass; but a photo that already has the item's aspect ratio gets the
same pixels from every placement, and comp's decode-once cache (which in a predicting learner holds the test
and validation images) records which images those are. When every image is one, crop and pad resizes are
replayed from one decode as squish is; otherwise `Learner.tta` runs, reading the others from the cache."""
import random

from .cache import budget, cache_of, nbytes
from .config import BETA


def tta(learn, dl, n=4, beta=BETA):
    """Probabilities lerp(mean of `n` augmented passes, plain pass, `beta`), as `Learner.tta` defines them."""
    import torch
    from fastcore.basics import noop
    if n < 1: raise ValueError('n must be at least 1')
    squish = _deterministic_items(dl)
    if (not squish and cache_of(dl.dataset) is None) or _item_bytes(dl) > budget():
        # Random item-level resizes without comp's cache, or too large to hold: fastai's own TTA.
        return learn.tta(dl=dl, n=n, beta=beta)[0]
    # Decoding must not move the random generators that the augmentations draw from.
    py_state, torch_state = random.getstate(), torch.get_rng_state()
    with dl.dataset.set_split_idx(1):
        raw = [_cpu(b) for b in dl.new(shuffle=False, drop_last=False, after_batch=noop)]
    random.setstate(py_state)
    torch.set_rng_state(torch_state)
    if not squish and not _placement_free(dl):
        # Some image (a landscape photo for a portrait item) is placed anew by every pass: fastai's own TTA,
        # whose passes read the others from the cache.
        return learn.tta(dl=dl, n=n, beta=beta)[0]
    act = getattr(learn.loss_func, 'activation', lambda o: o)   # as fastai's get_preds: none for a regression loss
    # fastai's crop and pad Resize draws two placement fractions per item in a training pass, in this
    # process when there are no workers; the batch augmentations draw from the same generator after them.
    draws = 0 if squish or dl.fake_l.num_workers else 2
    aug = []
    for _ in range(n):
        # fastai's get_preds makes a new DataLoader and iterates a torch one each pass; drawing the same
        # random numbers keeps the augmentations identical to fastai's for the same seed.
        random.randint(0, 2 ** 32 - 1)
        torch.empty((), dtype=torch.int64).random_()
        aug.append(_pass(learn, dl, raw, act, split_idx=0, draws=draws))
    return torch.lerp(torch.stack(aug).mean(0), _pass(learn, dl, raw, act, split_idx=1), beta)


def _placement_free(dl):
    """Whether the cache found, for every image of `dl`, that no crop or pad placement changes its pixels: then
    every TTA pass gets the pixels the plain pass got, and the passes can be replayed from one decode."""
    from fastai.data.transforms import ColReader
    cache, items = cache_of(dl.dataset), dl.dataset.items
    # the ColReader that gives each row's path, as the cache indexes it
    key = next((t for t in dl.dataset.tls[0].tfms.fs if isinstance(t, ColReader)), None)
    if cache is None or key is None or not hasattr(items, 'iloc'): return False
    return cache.all_fixed(key(items.iloc[i]) for i in range(len(items)))


def _item_resize(dl):
    """The item-level Resize: in the DataLoader's after_item, or inside comp's decode-once cache."""
    for t in dl.after_item.fs:
        if type(t).__name__ == 'Resize': return t
    cache = cache_of(dl.dataset)
    return cache.resize if cache is not None else None


def _deterministic_items(dl):
    r = _item_resize(dl)
    return r is None or str(getattr(r, 'method', 'squish')) == 'squish'


def _item_bytes(dl):
    """What holding every item of `dl` as uint8 takes (a full-size 480x640 photo where no resize is found)."""
    r = _item_resize(dl)
    w, h = (int(r.size[0]), int(r.size[1])) if r is not None else (480, 640)  # fastai keeps (width, height)
    return nbytes((None, (h, w)), len(dl.dataset))


def _cpu(b):
    return tuple(t.cpu() if hasattr(t, 'cpu') else t for t in b)


def _pass(learn, dl, raw, act, split_idx, draws=0):
    import torch
    from fastai.torch_core import to_device
    pipe = dl.after_batch
    old, pipe.split_idx = pipe.split_idx, split_idx
    model = learn.model.eval()
    dtype = _autocast_dtype(learn)
    out = []
    try:
        with torch.no_grad():
            for b in raw:
                for _ in range(draws * len(b[0])): random.random()
                xb = pipe(to_device(b, dl.device))[0]
                with torch.autocast(xb.device.type, dtype=dtype, enabled=dtype is not None):
                    out.append(act(model(xb)).float().cpu())
    finally:
        pipe.split_idx = old
    return torch.cat(out)


def _autocast_dtype(learn):
    import torch
    mp = getattr(learn, 'mixed_precision', None)
    if mp is None: return None
    return torch.bfloat16 if 'bf16' in str(getattr(mp, 'amp_mode', '')).lower() else torch.float16
