"""End-to-end training throughput on a GPU: real fastai training (Learner.fit, mixed precision), four inputs.

1. synthetic: comp's learner fed batches of random tensors already on the GPU (the upper bound);
   synthetic-adam: the same with fastai's own Adam in place of comp's (PyTorch's multi-tensor AdamW);
   synthetic-aug: uint8 random tensors at the item size on the GPU, through fastai's batch augmentation;
   X-ahead (synthetic, synthetic-aug, comp): X with the smoothed loss kept on the GPU and non-blocking
   copies, so the CPU can run ahead (run_ahead);
   X-free (synthetic, synthetic-aug, comp, recipe): X with comp.loop.sync_free, no read back to the CPU per
   batch anywhere in the loop (losses, metrics, bars, copies, and the batch augmentation's own reads);
2. comp: the learner `comp train` builds (comp.learner.training_learner) with a squish item resize, so
   each image is decoded once per run, read from a `comp resize` copy;
3. recipe: the same with the zoo recipe's own item resize (convnext_small: pad 480x360, not cacheable);
4. plain: fastai as the reference used it, ImageDataLoaders.from_folder with Resize(480, squish) on the
   original images, fastai's default workers.
The process is pinned to --cores CPUs (Kaggle's GPU notebooks have 4), and the DataLoader workers with it.
Images/s are for the training phase of each epoch (validation is skipped), worker start-up included.
Needs CUDA for bf16/fp16; `--precision fp32` runs anywhere (a smoke test on a CPU).
`--compile` compiles every learner's model (compile_model below), `--channels-last` converts it.
Usage: python bench/train_bench.py [--scale full] [--cores 4] [--precision bf16 fp16] [--epochs 3] [--compile]"""
import os
import tempfile
import time

from common import parser, record, sample


T0 = time.perf_counter()


def say(*a):
    print(f'[{time.perf_counter() - T0:6.1f}s]', *a, flush=True)


def timer_cb():
    """A fastai callback that times the training phase of every epoch and skips validation."""
    import torch
    from fastai.vision.all import Callback, CancelValidException, find_bs

    def sync():
        if torch.cuda.is_available(): torch.cuda.synchronize()

    class EpochTimer(Callback):
        order = 100

        def before_fit(self): self.rates = []

        def before_train(self):
            sync()
            self.n, self.t0 = 0, time.perf_counter()

        def after_batch(self):
            if self.training: self.n += find_bs(self.learn.yb)

        def after_train(self):
            sync()
            self.rates.append(round(self.n / (time.perf_counter() - self.t0), 1))
            say(f'  epoch {len(self.rates)}: {self.rates[-1]} img/s')

        def before_validate(self): raise CancelValidException()
    return EpochTimer()


def synthetic(learn, n_batches, bs, size, c, augment=None):
    """DataLoaders of one random batch already on the model's device, served n_batches times an epoch.

    With `augment` (an item size), the batch is uint8 at that size and goes through the learner's own batch
    transforms (fastai's augmentation on the GPU) every time: the bound plus augmentation, without loading."""
    import torch
    from fastai.vision.all import DataLoaders, TensorCategory, TensorImage
    tfms = learn.dls.train.after_batch
    dev = learn.dls.device  # where fastai puts the model at fit time; the model itself is still on the CPU here

    class Batches:
        n_inp = 1

        def __init__(self, n):
            self.n, self.bs = n, bs
            self.x = TensorImage(torch.rand(bs, 3, size, size, device=dev))
            self.y = TensorCategory(torch.randint(0, c, (bs,), device=dev))
            if augment: self.x = TensorImage(torch.randint(0, 256, (bs, 3, augment, augment), dtype=torch.uint8, device=dev))

        def __len__(self): return self.n

        def __iter__(self):
            if augment: return (tfms((self.x, self.y)) for _ in range(self.n))
            return ((self.x, self.y) for _ in range(self.n))

        def to(self, device): return self
    return DataLoaders(Batches(n_batches), Batches(1), device=dev)


def run_ahead(learn):
    """Let the CPU run ahead of the GPU, for the `-ahead` inputs: fastai reads its smoothed loss back to the CPU
    after every batch and copies each batch to the GPU blocking, so the CPU work of the next batch (its
    augmentation's Python, kernel launches) cannot overlap the GPU's work on this one. Here the smoothed loss
    stays on the GPU and batches copy from pinned memory without blocking. Returns an undo."""
    import functools
    import torch
    import fastai.data.load as load
    from fastai.learner import AvgSmoothLoss

    class DeviceSmoothLoss(AvgSmoothLoss):
        def accumulate(self, learn):
            self.count += 1
            loss = learn.loss.mean().detach().float()
            self.val = torch.lerp(loss, self.val.to(loss.device), self.beta)
    learn.recorder.smooth_loss = DeviceSmoothLoss(beta=learn.recorder.smooth_loss.beta)
    blocking = load.to_device
    load.to_device = functools.partial(blocking, non_blocking=True)
    return lambda: setattr(load, 'to_device', blocking)


def run(learn, epochs, ahead=False):
    """Train `learn` for `epochs` one-cycle epochs; images/s of each epoch's training and peak GPU memory."""
    import torch
    from comp.learner import no_bars
    no_bars(learn)
    learn.model.to(learn.dls.device)
    # A model left on the CPU "trains" at a few images/s under CUDA autocast: fail instead of measuring that.
    if torch.cuda.is_available() and next(learn.model.parameters()).device.type != 'cuda':
        raise SystemExit(f'the model is on {learn.dls.device}, not the GPU')
    t = timer_cb()
    if torch.cuda.is_available(): torch.cuda.reset_peak_memory_stats()
    undo = run_ahead(learn) if ahead else (lambda: None)
    try: learn.fit_one_cycle(epochs, 1e-4, cbs=[t])
    finally: undo()
    mem = round(torch.cuda.max_memory_allocated() / 2 ** 30, 2) if torch.cuda.is_available() else None
    return t.rates, mem


def main():
    ap = parser(__doc__)
    ap.add_argument('--arch', default='convnext_small')
    ap.add_argument('--size', type=int, default=224, help='training (batch) size')
    ap.add_argument('--item', type=int, default=288, help="comp's squish item size, cached as uint8")
    ap.add_argument('--bs', type=int, default=64)
    ap.add_argument('--epochs', type=int, default=3)
    ap.add_argument('--cores', type=int, default=4, help='CPU cores the whole process may use (0: all)')
    ap.add_argument('--workers', type=int, nargs='+', default=[None],
                    help="DataLoader workers, one run each (default: comp's and fastai's own)")
    ap.add_argument('--precision', nargs='+', default=['bf16', 'fp16'])
    ap.add_argument('--channels-last', action='store_true')
    ap.add_argument('--compile', action='store_true', help="torch.compile each model (compile_model below)")
    ap.add_argument('--inputs', nargs='+', default=['synthetic', 'comp', 'recipe', 'plain'],
                    choices=['synthetic', 'synthetic-adam', 'synthetic-aug', 'comp', 'recipe', 'plain',
                             'synthetic-ahead', 'synthetic-aug-ahead', 'comp-ahead',
                             'synthetic-free', 'synthetic-aug-free', 'comp-free', 'recipe-free'])
    a = ap.parse_args()
    if os.environ.get('BENCH_WATCHDOG'):  # print every thread's stack and exit if the run hangs
        import faulthandler
        faulthandler.dump_traceback_later(float(os.environ['BENCH_WATCHDOG']), exit=True)
    src = sample(a.scale)  # written with every core, before the process is pinned
    say('sample ready:', src)
    if a.cores: os.sched_setaffinity(0, set(sorted(os.sched_getaffinity(0))[:a.cores]))
    import torch
    torch.set_num_threads(len(os.sched_getaffinity(0)))
    from fastai.vision.all import Adam, ImageDataLoaders, Resize, aug_transforms, set_seed, vision_learner
    from comp import cache, competition, config, resize, train, zoo
    from comp.learner import training_learner
    from comp.loop import sync_free
    from comp.machine import cpus
    comp = competition.load(src)
    say('competition loaded')
    recipe = zoo.recipe(a.arch)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        def learner(precision, item_resize, workers):
            cfg = config.TrainConfig(arch=a.arch, data=str(src), size=(a.size, a.size), resize=item_resize, bs=a.bs,
                                    epochs=a.epochs, schedule='one_cycle', pretrained=False, precision=precision,
                                    channels_last=a.channels_last, workers=workers)
            c = config.resolve(cfg, comp)
            c['images'] = train._images(comp, c, tmp, quiet=False)
            run_dir = os.path.join(tmp, 'run')
            os.makedirs(run_dir, exist_ok=True)
            return training_learner(c, comp, run_dir, tmp)[0]

        # The smallest copy each item resize can use (a 480x640 photo's short side is 3/4 of its longest).
        copies = sorted({-(-max(r) * 4 // 3) for r in ((a.item, a.item), recipe.resize[1])})
        for copy in copies:
            if copy < 640: resize.resize(copy, comp, workdir=tmp)
        say('resized copies:', copies)
        for p in a.precision:
            # random tensors need no workers: one run each
            for full, nw in [(i, w) for i in a.inputs for w in (a.workers[:1] if i.startswith('synth') else a.workers)]:
                say('start', p, full, nw or '')
                inp, ahead, free = full.removesuffix('-ahead').removesuffix('-free'), full.endswith('-ahead'), full.endswith('-free')
                set_seed(42)
                if inp in ('synthetic', 'synthetic-adam', 'synthetic-aug', 'comp'):
                    learn = learner(p, ['squish', [a.item, a.item]], nw)
                    # before the synthetic batches take the learner's batch transforms
                    if free: sync_free(learn)
                    if inp.startswith('synthetic'):
                        learn.dls = synthetic(learn, len(learn.dls.train), a.bs, a.size, len(learn.dls.vocab),
                                              augment=a.item if inp == 'synthetic-aug' else None)
                    if inp == 'synthetic-adam': learn.opt_func = Adam
                    what = {'synthetic': 'random tensors on the GPU (upper bound)',
                            'synthetic-adam': "random tensors on the GPU, fastai's Adam",
                            'synthetic-aug': f"random uint8 {a.item} on the GPU + fastai's batch augmentation",
                            'comp': f'comp: squish {a.item}, decode once'}[inp]
                elif inp == 'recipe':
                    learn = learner(p, list(recipe.resize), nw)
                    if free: sync_free(learn)
                    what = f'comp: recipe item resize {recipe.resize[0]} {"x".join(map(str, recipe.resize[1]))}'
                else:
                    dls = ImageDataLoaders.from_folder(src, train='train_images', valid_pct=0.2, seed=42, bs=a.bs,
                                                       item_tfms=Resize(480, method='squish'),
                                                       batch_tfms=aug_transforms(size=a.size, min_scale=0.75),
                                                       **({'num_workers': nw} if nw is not None else {}))
                    learn = vision_learner(dls, a.arch, pretrained=False)
                    if p == 'bf16': learn.to_bf16()
                    elif p == 'fp16': learn.to_fp16()
                    if a.channels_last: learn.model = learn.model.to(memory_format=torch.channels_last)
                    what = 'plain fastai: from_folder, squish 480, originals'
                workers = getattr(getattr(learn.dls.train, 'fake_l', None), 'num_workers', 0)
                what += ', CPU runs ahead' if ahead else ''
                what += ', sync_free' if free else ''
                if a.compile: compile_model(learn)
                rates, mem = run(learn, a.epochs, ahead)
                rows.append({'precision': p, 'input': what, 'workers': workers,
                             **{f'epoch{i + 1}': r for i, r in enumerate(rates)}, 'gpu_mem_gib': mem})
                say(rows[-1])
                cache.release(learn.dls)
                del learn
                if torch.cuda.is_available(): torch.cuda.empty_cache()
    for p in a.precision:
        bound = [r for r in rows if r['precision'] == p and r['input'] == 'random tensors on the GPU (upper bound)']
        if not bound: continue
        first = 2 if a.epochs > 1 else 1  # from epoch 2 on, when the cache is full
        later = lambda r: sum(r[f'epoch{i}'] for i in range(first, a.epochs + 1)) / (a.epochs + 1 - first)
        for r in rows:
            if r['precision'] == p: r['of_bound_from_epoch2'] = round(later(r) / later(bound[0]), 3)
    name = (f"train_{'gpu' if torch.cuda.is_available() else 'cpu'}-{cpus()}cores-{'-'.join(a.precision)}"
            f"{'-channels_last' if a.channels_last else ''}{'-compile' if a.compile else ''}")
    record(name, rows,
           {'scale': a.scale, 'arch': a.arch, 'size': a.size, 'bs': a.bs, 'epochs': a.epochs, 'cores': cpus(),
            'channels_last': a.channels_last, 'compile': a.compile})


def compile_model(learn, **kw):
    """torch.compile `learn.model` in place (its state dict and submodules unchanged); a model that fails to
    compile runs uncompiled, with one line saying so. `kw` go to torch.compile. Returns `learn`."""
    model = learn.model
    eager = model.forward
    import torch
    compiled = torch.compile(eager, **kw)
    state = {'ok': True}

    def forward(*a, **k):
        if state['ok']:
            try: return compiled(*a, **k)
            except Exception as e:  # noqa: BLE001 - any compile failure: train uncompiled
                state['ok'] = False
                msg = str(e).strip().splitlines()[0][:200] if str(e).strip() else ''
                print(f'torch.compile failed ({type(e).__name__}: {msg}): training uncompiled', flush=True)
        return eager(*a, **k)
    model.forward = forward
    return learn


if __name__ == '__main__':
    main()
