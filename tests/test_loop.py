"""The training loop without waits (comp.loop.sync_free): fastai's results, without reading the GPU back per batch.

There is no GPU here, so `DeviceReads` stands in for CUDA's sync debug mode: it follows which tensors would
live on the GPU (the model's parameters and buffers, the batches fastai copies to the device with
`to_device`, tensors made with an explicit `device=`, and everything computed from them) and counts every
read of such a tensor back to the host (`.item()`, `.cpu()`, `bool()`, `float()`, `f'{t:.4f}'`, `.tolist()`,
`.numpy()`, `nonzero`, boolean indexing, `linalg.solve`'s check). It patches nothing: a TorchFunctionMode
only watches the torch calls."""
import weakref

import pytest
import torch
from torch.overrides import TorchFunctionMode

from comp import competition, config
from comp.learner import training_learner

READS = {'item', 'cpu', 'tolist', 'numpy', '__bool__', '__float__', '__int__', '__index__', '__format__',
         'nonzero', 'masked_select', 'unique', 'linalg_solve', 'linalg_inv'}


class DeviceReads(TorchFunctionMode):
    """Counts reads back to the host of tensors that would be on the GPU (see the module's doc).

    What is on the device is followed by storage (views and fastai's `as_subclass` casts share it); `.cpu()` of
    such a tensor returns a copy, as it would from a GPU, so the copy is host memory."""

    def __init__(self, *roots):
        super().__init__()
        self.refs, self.reads, self.stepping = {}, {}, False  # id(storage) -> weakref: a WeakSet would compare with ==
        for r in roots:
            for t in r: self._add(t)

    # PyTorch's AdamW keeps its step counts on the host and reads them there, by design: its step is not watched.
    def __enter__(self):
        from torch.optim.optimizer import register_optimizer_step_post_hook, register_optimizer_step_pre_hook
        self.hooks = [register_optimizer_step_pre_hook(lambda *a: setattr(self, 'stepping', True)),
                      register_optimizer_step_post_hook(lambda *a: setattr(self, 'stepping', False))]
        return super().__enter__()

    def __exit__(self, *exc):
        for h in self.hooks: h.remove()
        return super().__exit__(*exc)

    def _add(self, t):
        s = t.untyped_storage()
        i = id(s)
        if i not in self.refs: self.refs[i] = weakref.ref(s, lambda _, i=i: self.refs.pop(i, None))

    def _on(self, x):
        if not isinstance(x, torch.Tensor): return False
        s = x.untyped_storage()
        r = self.refs.get(id(s))
        return r is not None and r() is s

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        if self.stepping: return func(*args, **kwargs)
        name = getattr(func, '__name__', '')
        on = any(self._on(x) for x in _tensors(args, kwargs))
        if on and (name in READS or (name == '__getitem__' and any(
                self._on(x) and x.dtype == torch.bool for x in _tensors(args[1:], {})))):
            self.reads[name] = self.reads.get(name, 0) + 1
        out = func(*args, **kwargs)
        if on and name == 'cpu': return out.clone()
        copied = name == 'to' and 'non_blocking' in kwargs  # fastai's to_device: the batch goes to the device
        made = kwargs.get('device') is not None
        if on or copied or made:
            for o in _tensors((out,), {}):
                self._add(o)
        return out

    def total(self): return sum(self.reads.values())


def _tensors(args, kwargs):
    """The tensors among a torch call's arguments, and in its lists and tuples (a faster tree_flatten)."""
    for a in (*args, *kwargs.values()):
        if isinstance(a, torch.Tensor): yield a
        elif isinstance(a, (list, tuple)): yield from _tensors(a, {})


def fit(free, workspace, epochs=2, bs=8):
    """A comp training learner on the tiny sample, fit with (free) or without sync_free, counting device reads."""
    from fastai.vision.all import set_seed
    from comp.loop import sync_free
    comp = competition.find()
    c = config.resolve(config.TrainConfig(arch='test_convnext', epochs=epochs, workers=0, bs=bs, lr=1e-2), comp)
    set_seed(42)
    learn, _ = training_learner(c, comp, workspace, workspace)  # fastai's progress bars on
    if free: sync_free(learn, every=3600)
    reads = DeviceReads(learn.model.parameters(), learn.model.buffers())
    with reads: learn.fit_one_cycle(epochs, 1e-2)
    return learn, reads


@pytest.fixture(scope='module')
def two_fits(tiny_sample, tmp_path_factory):
    ws = tmp_path_factory.mktemp('loop')
    competition.record(competition.load(tiny_sample), ws)
    mp = pytest.MonkeyPatch()
    mp.chdir(ws)
    try: yield fit(False, ws), fit(True, ws)
    finally: mp.undo()


@pytest.mark.slow
def test_sync_free_fit_records_what_fastais_loop_records(two_fits):
    (a, _), (b, _) = two_fits
    assert len(a.recorder.losses) == len(b.recorder.losses) == 2 * len(a.dls.train)
    assert all(isinstance(v, torch.Tensor) and v.device.type == 'cpu' for v in b.recorder.losses)
    assert torch.equal(torch.stack(a.recorder.losses), torch.stack(b.recorder.losses))  # smoothed, per batch
    assert a.recorder.metric_names == b.recorder.metric_names                        # train/valid loss, error_rate
    assert a.recorder.values == b.recorder.values and all(isinstance(v, float) for v in b.recorder.values[-1])
    assert a.recorder.lrs == b.recorder.lrs and a.recorder.iters == b.recorder.iters
    assert all(torch.equal(p, q) for p, q in zip(a.model.parameters(), b.model.parameters()))


@pytest.mark.slow
def test_sync_free_fit_reads_the_device_per_epoch_not_per_batch(two_fits):
    (a, fastai), (b, free) = two_fits
    batches = 2 * (len(a.dls.train) + len(a.dls.valid))
    # fastai: the smoothed loss, the progress bar, the augmentation's grid and warp checks, each batch
    assert fastai.total() >= 3 * batches, fastai.reads
    # sync_free: per epoch the train loss, valid loss and error_rate, the recorder's losses, and the bar's
    # first and last read of each phase (its `every` is an hour here)
    assert free.total() <= 2 * 8, free.reads


def test_augmentation_equals_fastais_for_the_same_draws_without_device_reads():
    from fastai.vision.all import IntToFloatTensor, L, Pipeline, TensorCategory, TensorImage, set_seed
    from comp.data import batch_tfms
    from comp.loop import sync_free_tfms
    x = TensorImage(torch.randint(0, 256, (6, 3, 96, 80), dtype=torch.uint8))
    y = TensorCategory(torch.randint(0, 3, (6,)))
    # 64x48 is comp's 4:3 shape; 24x20 is a resize down by more than 2x, where fastai's own read is kept
    for size in [(64, 48), (24, 20)]:
        for split in (0, 1):
            plain = Pipeline([IntToFloatTensor(), *batch_tfms(size)], split_idx=split)
            free = Pipeline([IntToFloatTensor(), *batch_tfms(size)], split_idx=split)
            free.fs = L(sync_free_tfms(free.fs))
            assert [type(t).__name__ for t in free.fs] == ['IntToFloatTensor', 'SyncFreeAffine', 'SyncFreeCrop',
                                                           'Brightness']
            outs = []
            for seed in range(3):
                set_seed(seed)
                with DeviceReads([x, y]) as reads_a: a = plain((x, y))[0]
                set_seed(seed)
                with DeviceReads([x, y]) as reads_b: b = free((x, y))[0]
                assert type(b) is TensorImage and b.shape == (6, 3, *size)
                assert torch.equal(a, b), (size, split, seed)
                if size == (64, 48): assert reads_a.total() >= (4 if split == 0 else 2) and reads_b.total() == 0, (reads_a.reads, reads_b.reads)
                outs.append(b)
            if split == 0: assert not torch.equal(outs[0], outs[1])  # the draws did augment


def test_perspective_where_a_point_goes_to_infinity_is_left_unwarped_as_in_fastai():
    from fastai.vision.augment import apply_perspective as fastai_perspective
    from comp.loop import apply_perspective
    coords = torch.rand(2, 5, 4, 2) * 2 - 1
    coeffs = torch.rand(2, 8, 1)
    assert torch.equal(apply_perspective(coords, coeffs), fastai_perspective(coords, coeffs))
    coeffs[1, 6:] = 0.
    coeffs[1, 6, 0] = -1 / coords[1, 0, 0, 0]  # 1 + c6 x + c7 y = 0 at the first point
    coeffs[1, 7, 0] = 0.
    out = apply_perspective(coords, coeffs)
    assert torch.equal(out, fastai_perspective(coords, coeffs)) and torch.equal(out, coords)


def test_find_coeffs_solves_fastais_system():
    from fastai.vision.augment import find_coeffs as fastai_coeffs
    from comp.loop import find_coeffs
    p1 = torch.tensor([[-1., -1], [-1, 1], [1, -1], [1, 1]]).expand(5, 4, 2)
    p2 = p1 + (torch.rand(5, 4, 2) - 0.5) * 0.4
    assert torch.equal(find_coeffs(p1, p2), fastai_coeffs(p1, p2))
    assert torch.equal(find_coeffs(p2, p1), fastai_coeffs(p2, p1))
