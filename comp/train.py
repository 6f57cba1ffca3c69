"""train(cfg) -> run directory: DataLoaders, a timm learner, the schedule, and everything the run records."""
import os
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from . import competition, data, runs, zoo
from .errors import CompError, ConfigError
from .files import read_json, write_csv, write_json

SCHEDULES = ('fine_tune', 'one_cycle')
PRECISIONS = ('auto', 'fp32', 'fp16', 'bf16')
TARGETS = {'disease': ('label',), 'disease+variety': ('label', 'variety')}


@dataclass
class TrainConfig:
    """What a run is trained with; None means the recipe's value, filled in by `resolve`."""
    arch: str = 'convnext_small'
    data: str = None
    size: tuple = None
    resize: tuple = None           # (method, (height, width))
    bs: int = None
    accum: int = None
    lr: object = None              # a number, or 'auto' for lr_find
    epochs: int = None
    schedule: str = None
    pretrained: bool = None
    weights: str = None            # a weights file, or a folder of cached Hugging Face hub files
    precision: str = 'auto'
    channels_last: bool = False
    target: str = 'disease'
    seed: int = 42
    valid_pct: float = 0.2
    folds: int = None
    fold: int = 0
    workers: int = None
    cache: bool = True             # decode each image once per run, within data.cache_budget()


def resolve(cfg, comp=None):
    """The config with every default filled in from the recipe, checked, as a plain dict."""
    r = zoo.recipe(cfg.arch)
    out = asdict(cfg)
    out.update(name=r.name, arch=r.arch)
    for k in ('size', 'resize', 'bs', 'accum', 'lr', 'epochs', 'schedule', 'pretrained'):
        if out[k] is None: out[k] = getattr(r, k)
    out['size'] = _hw(out['size'], 'size')
    method, rsize = out['resize']
    out['resize'] = [method, _hw(rsize, 'resize')]
    if method not in zoo.RESIZE_METHODS: raise ConfigError(f'--resize {method}: use squish, crop or pad')
    if out['schedule'] not in SCHEDULES: raise ConfigError(f'--schedule {out["schedule"]}: use fine_tune or one_cycle')
    if out['precision'] not in PRECISIONS: raise ConfigError(f'--precision {out["precision"]}: use {", ".join(PRECISIONS)}')
    if out['target'] not in TARGETS: raise ConfigError(f'--target {out["target"]}: use {" or ".join(TARGETS)}')
    if out['lr'] != 'auto':
        try: out['lr'] = float(out['lr'])
        except ValueError: raise ConfigError(f'--lr {out["lr"]!r}: use a number such as 0.01, or auto') from None
    for k in ('bs', 'accum', 'epochs'):
        if int(out[k]) < 1: raise ConfigError(f'--{k} must be at least 1')
    fixed = zoo.fixed_input_size(out['arch'])
    if fixed and tuple(out['size']) != fixed:
        raise ConfigError(f'{out["arch"]} only takes {fixed[0]}x{fixed[1]} images: drop --size or use {fixed[0]}')
    if comp is not None: out['data'] = str(comp.path)
    out['workers'] = data.num_workers(out['workers'])
    return out


def _images(comp, c, workdir, quiet):
    """A pre-resized copy (`comp resize`) big enough for the recipe's item resize, else None (the originals)."""
    from .resize import usable
    d = usable(comp, workdir, c['resize'][1])
    if d is not None and not quiet:
        print(f'using pre-resized images from {d} (large enough for {c["resize"][0]} '
              f'{"x".join(map(str, c["resize"][1]))})', flush=True)
    return str(d.resolve()) if d is not None else None


def _hw(size, what):
    if isinstance(size, (int, float)): return [int(size), int(size)]
    if isinstance(size, str):
        try: size = [int(s) for s in size.lower().replace(',', 'x').split('x')]
        except ValueError: size = []
    size = list(size)
    if len(size) == 1: size = size * 2
    if len(size) != 2 or min(size) < 8: raise ConfigError(f'--{what} {size}: use a size such as 224 or 256x192')
    return [int(s) for s in size]


def train(cfg, workdir='.', resume=None, quiet=False):
    """Train one model and return its run directory (config, env, metrics, weights, vocab, validation preds)."""
    if resume is not None:
        run = runs.find(resume, workdir)
        if runs.status(run) == 'complete': raise CompError(f'run {run.name} is already complete')
        c = read_json(run / 'config.json')
        comp = competition.find(c['data'], workdir)
    else:
        comp = competition.find(cfg.data, workdir)
        c = resolve(cfg, comp)
        _precision(c['precision'])  # a precision this machine cannot run fails before any run is created
        c['images'] = _images(comp, c, workdir, quiet)
        run = runs.create(workdir, c)
    runs.set_status(run, 'running')
    try:
        result = _train(c, comp, run, workdir, resume is not None, quiet)
    except BaseException as e:
        runs.set_status(run, 'failed' if not isinstance(e, KeyboardInterrupt) else 'incomplete', error=str(e)[:500])
        raise
    write_json(run / 'result.json', result)
    runs.set_status(run, 'complete')
    return run


def training_learner(c, comp, run, workdir):
    """The learner a run trains: weights loaded, mixed precision, channels-last and gradient accumulation applied."""
    import torch
    from fastai.vision.all import GradientAccumulation
    learn = build_learner(c, comp, run, workdir, for_training=True)
    precision = _precision(c['precision'])
    if precision == 'fp16': learn.to_fp16()
    elif precision == 'bf16': learn.to_bf16()
    if c['channels_last']:
        learn.model = learn.model.to(memory_format=torch.channels_last)
    # fastai counts samples: one optimizer step per bs x accum images keeps the recipe's effective batch.
    if c['accum'] > 1: learn.add_cb(GradientAccumulation(c['bs'] * c['accum']))
    return learn, precision


def _train(c, comp, run, workdir, resuming, quiet):
    learn, precision = training_learner(c, comp, run, workdir)
    try: return _fit_and_record(learn, precision, c, comp, run, resuming, quiet)
    finally: data.release_cache(learn.dls)   # the next run in this process gets the memory


def _fit_and_record(learn, precision, c, comp, run, resuming, quiet):
    from fastai.vision.all import minimum, slide, steep, valley
    if not quiet: print(f'decode-once cache: {learn.dls.decode_cache}', flush=True)
    from .callbacks import RunLog
    from .predict import error
    log = RunLog(run, quiet=quiet or sys.stdout.isatty())
    learn.add_cb(log)
    if not sys.stdout.isatty() or quiet: no_bars(learn)
    done = 0
    if resuming and (run / 'checkpoint.pth').exists():
        learn.load('checkpoint', with_opt=True)
        done = read_json(run / 'status.json').get('epochs_done', 0)
    lr = c['lr']
    if lr == 'auto' and resuming and (run / 'lr_find.json').exists():
        # The run's own choice: lr_find on a half-trained model would pick another rate mid-schedule.
        found = read_json(run / 'lr_find.json')
        lr = found['suggestions'][found['chosen']]
    elif lr == 'auto':
        lr = _lr_find(learn, run, (minimum, steep, valley, slide))
    t0 = time.time()
    fit(learn, c['schedule'], c['epochs'], lr, start=done)
    learn.save('model')
    (run / 'checkpoint.pth').unlink(missing_ok=True)
    vocab = list(learn.dls.vocab[0] if c['target'] != 'disease' else learn.dls.vocab)
    write_json(run / 'vocab.json', vocab)
    valid = valid_preds(learn, comp, vocab)
    write_csv(run / 'preds_valid.csv', valid)
    err = error(valid, vocab)
    _plots(learn, run, valid, vocab)
    secs = time.time() - t0
    n_train = len(learn.dls.train_ds)
    return {'valid_error': err, 'precision': precision, 'lr': lr, 'decode_cache': learn.dls.decode_cache,
            'seconds': round(secs, 1),
            'seconds_per_epoch': log.seconds_per_epoch(), 'images_per_s': log.images_per_second(n_train),
            'n_train': n_train, 'n_valid': len(valid), 'device': str(learn.dls.device)}


def build_learner(c, comp, run, workdir, for_training=False):
    """DataLoaders and a fastai learner for a resolved config; weights are loaded only when training.

    A learner not for training predicts: its decode-once cache holds the test and validation images."""
    from fastai.vision.all import Normalize, vision_learner
    valid = data.valid_ids(comp, workdir, c['seed'], c['valid_pct'], c['folds'], c['fold'])
    targets = TARGETS[c['target']]
    test = () if for_training else list(data.test_items(comp)['path'])
    dls = data.dataloaders(comp, valid, c['size'], c['resize'], c['bs'], targets, c['workers'], c['seed'],
                           root=c.get('images'), cache=c.get('cache', True), test=test)
    kw = {}
    if len(targets) > 1:
        from .callbacks import MultiTargetLoss, multi_target_metrics
        sizes = [len(v) for v in dls.vocab]
        kw.update(n_out=sum(sizes), loss_func=MultiTargetLoss(sizes), metrics=multi_target_metrics(sizes, targets))
    else:
        from fastai.vision.all import error_rate
        kw['metrics'] = error_rate
    pretrained = bool(c['pretrained']) and for_training
    if pretrained and c.get('weights'): kw['pretrained_cfg_overlay'] = {'file': str(weights_file(c['arch'], c['weights']))}
    elif pretrained: _check_hub(c['arch'])
    try:
        learn = vision_learner(dls, c['arch'], pretrained=pretrained, normalize=False, path=run, model_dir='.',
                               opt_func=adamw, **kw)
    except (OSError, RuntimeError, ValueError) as e:
        if not pretrained: raise
        raise CompError(f'could not load pretrained weights for {c["arch"]} ({type(e).__name__}): {NO_WEIGHTS}') from e
    if c['pretrained']:
        # The model's own normalization, known from timm's config without any download.
        cfg = learn.model[0].model.pretrained_cfg
        dls.add_tfms([Normalize.from_stats(cfg['mean'], cfg['std'])], 'after_batch')
    return learn


def adamw(params, **kw):
    """fastai's Adam (betas 0.9/0.99, eps 1e-5, decoupled weight decay 0.01) as PyTorch's AdamW, in fastai's wrapper.

    fastai's own Adam steps each parameter in Python, several small kernels apiece; on a GPU that loop, not the
    model, set the pace (bench/README.md). PyTorch's AdamW steps all parameters in a few multi-tensor kernels.
    Unlike fastai's, it also decays norm and bias weights."""
    import torch
    from fastai.optimizer import OptimWrapper
    return OptimWrapper(params, opt=torch.optim.AdamW, betas=(0.9, 0.99), eps=1e-5, weight_decay=0.01, **kw)


def no_bars(learn):
    """Off a terminal, RunLog's one line per epoch replaces fastprogress's bars and fastai's raw lists."""
    from fastai.vision.all import ProgressCallback
    from fastcore.basics import noop
    learn.remove_cb(ProgressCallback)
    learn.logger = noop
    return learn


NO_WEIGHTS = ('pass --weights FILE (or a folder of cached Hugging Face hub files), or --no-pretrained')


def _check_hub(arch):
    """Fail at once, not after minutes of retries, when the weights are neither cached nor downloadable."""
    import socket
    import timm
    from huggingface_hub import try_to_load_from_cache
    cfg = timm.get_pretrained_cfg(arch)
    repo = cfg and cfg.hf_hub_id
    if not repo: return  # weights from a URL or elsewhere: let timm try
    if any(isinstance(try_to_load_from_cache(repo, f), str) for f in ('model.safetensors', 'pytorch_model.bin')):
        return
    if os.environ.get('HF_HUB_OFFLINE', '').lower() in ('1', 'true', 'yes'):
        raise CompError(f'pretrained weights for {arch} are not in the Hugging Face cache and HF_HUB_OFFLINE is set: {NO_WEIGHTS}')
    try: socket.create_connection(('huggingface.co', 443), timeout=5).close()
    except OSError:
        raise CompError(f'no network to download pretrained weights for {arch}: {NO_WEIGHTS}') from None


WEIGHT_FILES = ('model.safetensors', 'pytorch_model.bin')


def weights_file(arch, weights):
    """The weights file for `arch` from --weights: a file, or a folder of cached Hugging Face hub files.

    A hub-cache folder (as attached to a Kaggle notebook with internet off) is searched for timm's repo of
    `arch`; a plain folder for `<arch>/model.safetensors` or a single weights file."""
    import timm
    from huggingface_hub import try_to_load_from_cache
    w = Path(weights).expanduser()
    if w.is_file(): return w
    if not w.is_dir(): raise ConfigError(f'--weights {weights}: no such file or folder')
    cfg = timm.get_pretrained_cfg(arch)
    repo = cfg and cfg.hf_hub_id
    for root in (w, w / 'hub'):
        for f in WEIGHT_FILES:
            hit = repo and try_to_load_from_cache(repo, f, cache_dir=root)
            if isinstance(hit, str): return Path(hit)
    for d in (w / arch, w / arch.split('.')[0], w):
        found = [d / f for f in WEIGHT_FILES if (d / f).is_file()]
        if found: return found[0]
    raise ConfigError(f'--weights {weights}: no weights for {arch} in it (expected a Hugging Face hub cache '
                      f'with {repo or arch}, or {arch}/model.safetensors)')


def _precision(p):
    import torch
    if p != 'auto':
        if p != 'fp32' and not torch.cuda.is_available():
            raise ConfigError(f'--precision {p} needs a CUDA GPU: use fp32 or auto on this machine')
        if p == 'bf16' and not torch.cuda.is_bf16_supported():
            raise ConfigError('this GPU has no bf16: use --precision fp16 or auto')
        return p
    if not torch.cuda.is_available(): return 'fp32'
    return 'bf16' if torch.cuda.is_bf16_supported() else 'fp16'


def fit(learn, schedule, epochs, lr, start=0, freeze_epochs=1):
    """fastai's fine_tune (frozen epoch, then discriminative lr) or fit_one_cycle, resumable at epoch `start`.

    Epochs are counted across both phases of fine_tune, so `start` is the number of epochs already done."""
    log = getattr(learn, 'run_log', None)
    def phase(offset):
        if log is not None: log.epoch_offset = offset
    if schedule == 'one_cycle':
        phase(0)
        learn.unfreeze()
        learn.fit_one_cycle(epochs, lr, start_epoch=start)
        return
    # The same calls as fastai's Learner.fine_tune, split so a resumed run can skip done epochs.
    if start < freeze_epochs:
        phase(0)
        learn.freeze()
        learn.fit_one_cycle(freeze_epochs, slice(lr), pct_start=0.99, start_epoch=start)
    phase(freeze_epochs)
    learn.unfreeze()
    base = lr / 2
    learn.fit_one_cycle(epochs, slice(base / 100, base), pct_start=0.3, div=5.0,
                        start_epoch=max(0, start - freeze_epochs))


def _lr_find(learn, run, funcs):
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt
    # fastai's 100 iterations, or about five epochs on a small dataset.
    sugg = learn.lr_find(num_it=min(100, max(20, 5 * len(learn.dls.train))), suggest_funcs=funcs, show_plot=True)
    plt.savefig(run / 'lr_find.png')
    plt.close('all')
    found = {f.__name__: float(v) for f, v in zip(funcs, sugg)}
    write_json(run / 'lr_find.json', {'suggestions': found, 'chosen': 'valley'})
    return found['valley']


def valid_preds(learn, comp, vocab, dl=None):
    """Validation probabilities with image ids and true labels, as a DataFrame."""
    import pandas as pd
    preds, _ = learn.get_preds(dl=dl or learn.dls.valid)
    items = learn.dls.valid.items
    df = pd.DataFrame(preds[:, :len(vocab)].numpy(), columns=vocab)
    df.insert(0, 'label', items[comp.layout.label_col].to_numpy())
    df.insert(0, comp.layout.id_col, items[comp.layout.id_col].to_numpy())
    return df


def _plots(learn, run, valid, vocab):
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt
    from sklearn.metrics import confusion_matrix
    learn.recorder.plot_loss()
    plt.savefig(run / 'loss.png')
    plt.close('all')
    cm = confusion_matrix(valid['label'], [vocab[i] for i in valid[vocab].to_numpy().argmax(1)], labels=vocab)
    fig, ax = plt.subplots(figsize=(8, 8))
    ax.imshow(cm, cmap='Blues')
    ax.set(xticks=range(len(vocab)), yticks=range(len(vocab)), xlabel='predicted', ylabel='actual')
    ax.set_xticklabels(vocab, rotation=90)
    ax.set_yticklabels(vocab)
    for i in range(len(vocab)):
        for j in range(len(vocab)): ax.text(j, i, cm[i, j], ha='center', va='center', fontsize=8)
    fig.tight_layout()
    fig.savefig(run / 'confusion.png')
    plt.close('all')
