"""Test-time augmentation that decodes each image once, with the same result as fastai's `Learner.tta`.

fastai's TTA runs n augmented passes plus one plain pass over the DataLoader, decoding every JPEG n+1
times. Here the item-level output (decoded and resized, uint8) is collected once and the batch-level
augmentations, where all of TTA's randomness lives for squish resizes, run n times over it. fastai crops
and places padded images at random per pass, so crop and pad resizes use `Learner.tta` itself (whose
validation passes still read comp's decode-once cache for the images every placement leaves unchanged)."""
import random

from .data import cache_budget, cache_of


def tta(learn, dl, n=4, beta=0.25):
    """Probabilities lerp(mean of `n` augmented passes, plain pass, `beta`), as `Learner.tta` defines them."""
    import torch
    from fastcore.basics import noop
    if n < 1: raise ValueError('n must be at least 1')
    if not _deterministic_items(dl) or len(dl.dataset) * 3 * _item_pixels(dl) > cache_budget():
        # Random item-level resizes, or too large to hold: fastai's own TTA, which decodes every pass.
        return learn.tta(dl=dl, n=n, beta=beta)[0]
    # Decoding must not move the random generators that the augmentations draw from.
    py_state, torch_state = random.getstate(), torch.get_rng_state()
    with dl.dataset.set_split_idx(1):
        raw = [_cpu(b) for b in dl.new(shuffle=False, drop_last=False, after_batch=noop)]
    random.setstate(py_state)
    torch.set_rng_state(torch_state)
    act = getattr(learn.loss_func, 'activation', lambda o: o.softmax(-1))
    aug = []
    for _ in range(n):
        # fastai's get_preds makes a new DataLoader and iterates a torch one each pass; drawing the same
        # random numbers keeps the augmentations identical to fastai's for the same seed.
        random.randint(0, 2 ** 32 - 1)
        torch.empty((), dtype=torch.int64).random_()
        aug.append(_pass(learn, dl, raw, act, split_idx=0))
    return torch.lerp(torch.stack(aug).mean(0), _pass(learn, dl, raw, act, split_idx=1), beta)


def _item_resize(dl):
    """The item-level Resize: in the DataLoader's after_item, or inside comp's decode-once cache."""
    for t in dl.after_item.fs:
        if type(t).__name__ == 'Resize': return t
    cache = cache_of(dl.dataset)
    return cache.resize if cache is not None else None


def _deterministic_items(dl):
    r = _item_resize(dl)
    return r is None or str(getattr(r, 'method', 'squish')) == 'squish'


def _item_pixels(dl):
    r = _item_resize(dl)
    return int(r.size[0]) * int(r.size[1]) if r is not None else 640 * 480


def _cpu(b):
    return tuple(t.cpu() if hasattr(t, 'cpu') else t for t in b)


def _pass(learn, dl, raw, act, split_idx):
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
