"""Where fastai's batch augmentation spends its time, per batch, and what comp.loop's sync-free version saves.

The batch transforms comp trains with (`comp.data.batch_tfms`: fastai's aug_transforms with min_scale 0.75, so
flip+warp+rotate+zoom as one AffineCoordTfm, then RandomResizedCropGPU, then brightness+contrast in logit
space) on random uint8 batches at the item size, timed stage by stage: the affine matrices and warp draws
(before_call), the sampling grid (affine_grid and the perspective warp: find_coeffs, apply_perspective),
grid_sample (with fastai's read of the grid's extent), the crop's resample, and the lighting. Each stage also
gets its count of PyTorch kernels (aten ops: on a GPU, one launch each) and of device reads (a sync each on a
GPU). `--item 8` times the same calls on 8x8 images: little arithmetic, so mostly the Python and dispatch
cost that a GPU run pays on the CPU per batch. The sync-free batches are checked equal to fastai's.
Usage: python bench/aug_bench.py [--bs 64] [--item 288] [--size 224] [--batches 10] [--threads 1]"""
import os
import subprocess
import time
from pathlib import Path

from common import parser, record

STAGES = ('to float', 'affine: matrices and draws', 'affine: grid and warp', 'affine: grid_sample',
          'crop: draw and resample', 'lighting: draws', 'lighting: logit, add, mul, sigmoid')


READS = ('_local_scalar_dense', '_linalg_check_errors', 'nonzero')


def commit():
    try:
        return subprocess.run(['git', 'rev-parse', '--short', 'HEAD'], cwd=Path(__file__).parent, capture_output=True,
                              text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError): return None


def one_batch(fs, b, free, clock):
    """fastai's Pipeline call on one training batch, split into STAGES; `clock(stage)` marks each end."""
    from functools import partial
    from fastai.vision.augment import _grid_sample, affine_grid, compose_tfms
    from comp import loop
    to_float, aff, crop, light = fs
    x, y = to_float(b, split_idx=0)
    clock(0)
    a = aff.tfm if free else aff
    a.before_call((x, y), split_idx=0)
    clock(1)
    coords = affine_grid(a.mat, x.shape[:2] + tuple(x.shape[-2:]), align_corners=a.align_corners)
    warp = loop._coord_func(a.coord_fs, False) if free else partial(compose_tfms, tfms=a.coord_fs)
    coords = warp(coords)
    clock(2)
    x = (loop.grid_sample if free else _grid_sample)(x, coords, mode=a.mode, padding_mode=a.pad_mode,
                                                     align_corners=a.align_corners)
    clock(3)
    x = crop((type(b[0])(x), y), split_idx=0)[0]
    clock(4)
    light.before_call(x, split_idx=0)
    clock(5)
    x = light.encodes(x)
    clock(6)
    return x


def measure(free, bs, item, size, batches, seed=0):
    """Seconds, kernels and device reads per batch for each stage; the last batch, for the equality check."""
    import torch
    from fastai.vision.all import L, IntToFloatTensor, Pipeline, TensorCategory, TensorImage, set_seed
    from torch.utils._python_dispatch import TorchDispatchMode
    from comp.data import batch_tfms
    from comp.loop import sync_free_tfms
    pipe = Pipeline([IntToFloatTensor(), *batch_tfms((size, size))], split_idx=0)
    if free: pipe.fs = L(sync_free_tfms(pipe.fs))
    assert [type(t).__name__ for t in pipe.fs][2:] in (['RandomResizedCropGPU', 'Brightness'], ['SyncFreeCrop', 'Brightness'])
    g = torch.Generator().manual_seed(seed)
    b = (TensorImage(torch.randint(0, 256, (bs, 3, item, item), dtype=torch.uint8, generator=g)),
         TensorCategory(torch.randint(0, 10, (bs,), generator=g)))
    secs, kernels, reads = [0.] * len(STAGES), [0] * len(STAGES), [0] * len(STAGES)
    state = {'t': 0., 'k': 0, 'r': 0}

    class Count(TorchDispatchMode):
        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            state['k'] += 1
            # what .item() / bool() run, and linalg.solve's check of its result: each waits for a GPU
            if func.name().split('::')[-1].split('.')[0] in READS: state['r'] += 1
            return func(*args, **(kwargs or {}))

    def clock(i):
        now = time.perf_counter()
        secs[i] += now - state['t']
        kernels[i] += state['k']
        reads[i] += state['r']
        state.update(t=time.perf_counter(), k=0, r=0)

    for n in range(2 + batches):  # two warm-up batches
        if n == 2: secs[:], kernels[:], reads[:] = [0.] * len(STAGES), [0] * len(STAGES), [0] * len(STAGES)
        set_seed(seed + n)
        state.update(t=time.perf_counter(), k=0, r=0)
        out = one_batch(pipe.fs, b, free, clock)
    # the kernels and reads of one batch, counted apart from the timing
    set_seed(seed)
    with Count():
        state.update(t=time.perf_counter(), k=0, r=0)
        k0, r0 = kernels[:], reads[:]
        one_batch(pipe.fs, b, free, clock)
    per = [k - k0i for k, k0i in zip(kernels, k0)], [r - r0i for r, r0i in zip(reads, r0)]
    set_seed(seed)
    whole = pipe(b)[0]  # the Pipeline itself, for the equality check against the stage-by-stage call
    set_seed(seed)
    staged = one_batch(pipe.fs, b, free, lambda i: None)
    assert torch.equal(whole, staged), 'the stage-by-stage call differs from the Pipeline'
    return [s / batches * 1000 for s in secs], per[0], per[1], whole


def main():
    ap = parser(__doc__)
    ap.add_argument('--bs', type=int, default=64)
    ap.add_argument('--item', type=int, nargs='+', default=[288, 8], help='input (item) sizes, one run each')
    ap.add_argument('--size', type=int, default=224, help='output (batch) size; item 8 uses 8')
    ap.add_argument('--batches', type=int, default=10)
    ap.add_argument('--threads', type=int, default=1, help='torch CPU threads (the machine is shared)')
    a = ap.parse_args()
    import torch
    torch.set_num_threads(a.threads)
    rows = []
    for item in a.item:
        size = a.size if item > a.size else item
        res = {f: measure(f, a.bs, item, size, a.batches) for f in (False, True)}
        assert torch.equal(res[False][3], res[True][3]), 'sync-free batches differ from fastai'
        for i, st in enumerate(STAGES):
            rows.append({'item': item, 'size': size, 'stage': st,
                         'fastai_ms': round(res[False][0][i], 2), 'sync_free_ms': round(res[True][0][i], 2),
                         'kernels': f'{res[False][1][i]} / {res[True][1][i]}',
                         'device_reads': f'{res[False][2][i]} / {res[True][2][i]}'})
        rows.append({'item': item, 'size': size, 'stage': 'total per batch',
                     'fastai_ms': round(sum(res[False][0]), 2), 'sync_free_ms': round(sum(res[True][0]), 2),
                     'kernels': f'{sum(res[False][1])} / {sum(res[True][1])}',
                     'device_reads': f'{sum(res[False][2])} / {sum(res[True][2])}'})
    cores = sorted(os.sched_getaffinity(0))
    record('aug-cpu', rows, {'bs': a.bs, 'batches': a.batches, 'torch_threads': a.threads, 'cores': len(cores),
                             'affinity': cores, 'commit': commit(), 'equal_batches': True,
                             'note': 'kernels and device_reads: fastai / sync-free, per batch'})


if __name__ == '__main__':
    main()
