"""train(cfg) -> Run: the config resolved from the recipe, the schedule, and everything the run records."""
import sys
import time
from dataclasses import asdict, dataclass

from . import competition, data, runs, zoo
from .errors import CompError, ConfigError
from .learner import TARGETS, error, no_bars, precision, training_learner, valid_preds

SCHEDULES = ('fine_tune', 'one_cycle')
PRECISIONS = ('auto', 'fp32', 'fp16', 'bf16')


@dataclass
class TrainConfig:
    """What a run is trained with; None means the recipe's value, filled in by `resolve`."""
    arch: str = 'convnext_small'
    data: str = None
    size: tuple = None             # 224, '256x192' or (height, width)
    resize: tuple = None           # (method, (height, width)), or 'METHOD[:SIZE]' as on the command line
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
    cache: bool = True             # decode each image once per run, within comp.cache.budget()
    sync_free: bool = False        # comp.loop's training loop without per-batch reads back to the CPU
    # Regularisers and weight averaging (bench/quality.py measures each): 0 / 'last' is off.
    label_smoothing: float = 0.0   # eps of fastai's LabelSmoothingCrossEntropyFlat, per head
    mixup: float = 0.0             # alpha of fastai's MixUp
    cutmix: float = 0.0            # alpha of fastai's CutMix
    ema: float = 0.0               # decay of timm's ModelEmaV3 (with warm-up): validated, saved and predicted with
    keep: str = 'last'             # the weights saved: the 'last' epoch's or the 'best' epoch's by validation error
    average_last: int = 0          # save the average of the last K epochs' weights (timm's avg_checkpoints)
    # aug_transforms strengths; None is the reference recipe's (data.AUG)
    min_scale: float = None
    max_rotate: float = None
    max_zoom: float = None
    max_lighting: float = None
    max_warp: float = None
    flip: bool = None
    sizes: tuple = None            # progressive resizing: the epochs split across these growing sizes, e.g. '128,192,256'
    procs: int = None              # data-parallel processes, one per GPU (comp.distributed); None: 1, or a launcher's


def resolve(cfg, comp=None):
    """The config with every default filled in from the recipe, checked, as a plain dict."""
    r = zoo.recipe(cfg.arch)
    out = asdict(cfg)
    out.update(name=r.name, arch=r.arch)
    if isinstance(out['resize'], str): out['resize'] = parse_resize(out['resize'])
    if out['pretrained'] is None and not zoo.has_weights(r.arch): out['pretrained'] = False
    if out['size'] is None and out['sizes']:   # progressive resizing ends at the run's size
        out['size'] = (out['sizes'].split(',') if isinstance(out['sizes'], str) else out['sizes'])[-1]
    chosen_schedule = out['schedule']
    for k in ('size', 'resize', 'bs', 'accum', 'lr', 'epochs', 'schedule', 'pretrained'):
        if out[k] is None: out[k] = getattr(r, k)
    out['size'] = _hw(out['size'], 'size')
    method, rsize = out['resize']
    out['resize'] = [method, _hw(rsize, 'resize')]
    if method not in zoo.RESIZE_METHODS: raise ConfigError(f'--resize {method}: use squish, crop or pad')
    out['schedule'], out['schedule_why'] = _schedule(chosen_schedule, out['schedule'], out['pretrained'])
    if out['schedule'] not in SCHEDULES: raise ConfigError(f'--schedule {out["schedule"]}: use fine_tune or one_cycle')
    if out['precision'] not in PRECISIONS: raise ConfigError(f'--precision {out["precision"]}: use {", ".join(PRECISIONS)}')
    if out['target'] not in TARGETS: raise ConfigError(f'--target {out["target"]}: use {" or ".join(TARGETS)}')
    if out['lr'] != 'auto':
        try: out['lr'] = float(out['lr'])
        except ValueError: raise ConfigError(f'--lr {out["lr"]!r}: use a number such as 0.01, or auto') from None
    for k in ('bs', 'accum', 'epochs'):
        if int(out[k]) < 1: raise ConfigError(f'--{k} must be at least 1')
    _resolve_procs(out)
    fixed = zoo.fixed_input_size(out['arch'])
    if fixed and out['sizes']:
        raise ConfigError(f'{out["arch"]} is built for one input size: drop --sizes (--size alone resizes it)')
    if fixed and tuple(out['size']) != fixed: zoo.check_input_size(out['arch'], out['size'])
    _resolve_regularisers(out)
    out['normalize'] = zoo.normalization(out['arch']) if out['pretrained'] else None
    if comp is not None:
        out['data'] = str(comp.path)
        n = len(comp.pseudo_ids())
        if n: out['pseudo'] = n   # the runs table shows which runs saw pseudo-labels
        if n and out['target'] != 'disease':
            raise ConfigError(f'{comp.path} has pseudo-labelled images, which have a disease label only: use --target disease')
    # Processes share the cores: by default each loads with its share of them.
    out['workers'] = data.num_workers(out['workers']) if out['workers'] is not None or out['procs'] == 1 else \
        max(1, data.num_workers() // out['procs'])
    return out


def _resolve_procs(out):
    """procs (a launcher's process count when under one) and the effective batch, bs x accum x procs. The learning
    rate stays the recipe's (or --lr's): comp does not scale it with the effective batch."""
    from . import distributed as dist
    under = dist.world()
    if out['procs'] is None: out['procs'] = under
    try: out['procs'] = int(out['procs'])
    except (TypeError, ValueError): out['procs'] = 0
    if out['procs'] < 1: raise ConfigError('--procs must be at least 1')
    if under > 1 and out['procs'] != under:
        raise ConfigError(f'--procs {out["procs"]}, but the launcher started {under} processes: drop --procs '
                          '(the launcher sets them)')
    out['effective_bs'] = int(out['bs']) * int(out['accum']) * out['procs']
    if out['procs'] > 1:
        off = [o for o, on in (('--ema', out['ema']), ('--keep best', out['keep'] == 'best'),
                               ('--average-last', out['average_last']), ('--sync-free', out['sync_free'])) if on]
        if off: raise ConfigError(f'{off[0]} is not supported with --procs {out["procs"]}: drop one of them')


def _resolve_regularisers(out):
    """Check the regularisers, averaging and augmentation options, and fill in the augmentation defaults."""
    def number(k, ok, how):
        try: v = float(out[k])
        except (TypeError, ValueError): v = float('nan')
        if not ok(v): raise ConfigError(f'--{k.replace("_", "-")} {out[k]}: {how}')
        out[k] = v
    number('label_smoothing', lambda v: 0 <= v < 1, 'use a value from 0 (off) to below 1, such as 0.1')
    number('mixup', lambda v: v >= 0, 'use an alpha of 0 (off) or more, such as 0.4')
    number('cutmix', lambda v: v >= 0, 'use an alpha of 0 (off) or more, such as 1.0')
    number('ema', lambda v: 0 <= v < 1, 'use a decay from 0 (off) to below 1, such as 0.998')
    if out['mixup'] and out['cutmix']: raise ConfigError('--mixup and --cutmix: use one of them')
    if (out['mixup'] or out['cutmix']) and out['target'] != 'disease':
        raise ConfigError(f'--mixup/--cutmix mix one label per image: use them with --target disease')
    if out['keep'] not in ('best', 'last'): raise ConfigError(f'--keep {out["keep"]}: use best or last')
    if out['keep'] == 'best' and no_validation(out):
        raise ConfigError('--keep best picks an epoch by validation error, and --valid-pct 0 leaves no validation set: use --keep last')
    if int(out['average_last']) < 0: raise ConfigError(f'--average-last {out["average_last"]}: use 0 (off) or K >= 2')
    out['average_last'] = int(out['average_last'])
    if out['average_last'] and out['keep'] == 'best':
        raise ConfigError('--average-last averages the last epochs: use it with --keep last')
    if out['average_last'] > out['epochs']:
        raise ConfigError(f'--average-last {out["average_last"]} is more than the {out["epochs"]} epochs: use at most {out["epochs"]}')
    for k, v in data.AUG.items():
        if out[k] is None: out[k] = v
    number('min_scale', lambda v: 0 < v <= 1, 'use a fraction of the image area above 0, up to 1 (no crop)')
    number('max_rotate', lambda v: 0 <= v <= 180, 'use degrees from 0 (off) to 180')
    number('max_zoom', lambda v: v >= 1, 'use 1 (off) or more, such as 1.1')
    number('max_lighting', lambda v: 0 <= v < 1, 'use a value from 0 (off) to below 1, such as 0.2')
    number('max_warp', lambda v: 0 <= v < 1, 'use a value from 0 (off) to below 1, such as 0.2')
    out['flip'] = bool(out['flip'])
    if out['sizes'] is not None:
        text = out['sizes'].split(',') if isinstance(out['sizes'], str) else out['sizes']
        sizes = [_hw(s, 'sizes') for s in text]
        if len(sizes) < 2 or len(sizes) > out['epochs']:
            raise ConfigError(f'--sizes {out["sizes"]}: use 2 to {out["epochs"]} (the epochs) sizes, such as 128,192,256')
        if sizes[-1] != out['size']:
            raise ConfigError(f'--sizes ends at {"x".join(map(str, sizes[-1]))} but --size is '
                              f'{"x".join(map(str, out["size"]))}: end --sizes at the size to predict at, or drop --size')
        out['sizes'] = sizes


def no_validation(c):
    """Whether a config trains on every training image (--valid-pct 0, e.g. a CV group's refit): no validation score."""
    return not c.get('folds') and c.get('valid_pct') == 0


NO_VALIDATION = 'trained on every training image (--valid-pct 0): it has no validation score of its own'


def _schedule(chosen, recipe, pretrained):
    """(schedule, why): fine_tune's frozen epoch and lowered early-layer rates only make sense for pretrained weights."""
    if chosen is not None: return chosen, 'set by --schedule'
    if not pretrained:
        return 'one_cycle', 'no pretrained weights: one_cycle trains the whole randomly initialised model at the full rate'
    return recipe, "the recipe's, for pretrained weights"


# What a run's identity does not depend on: where its images and weights came from, how they were loaded.
NOT_IDENTITY = ('workers', 'images', 'weights', 'cache', 'sync_free', 'effective_bs')   # effective_bs: derived


def identity(c):
    """A resolved config without what does not change the run, as JSON would hold it: two configs with the same
    identity train the same run (so a notebook or a CV group can find one it started before)."""
    import json
    c = {'procs': 1, **c}   # runs recorded before --procs trained on one process
    return json.loads(json.dumps({k: v for k, v in c.items() if k not in NOT_IDENTITY}, default=str))


def parse_resize(text):
    """'pad:480x360' -> ('pad', '480x360'); a method alone keeps 480."""
    method, _, size = str(text).partition(':')
    return method, size or '480'


def _hw(size, what):
    given = size if isinstance(size, str) else 'x'.join(map(str, size)) if isinstance(size, (list, tuple)) else size
    if isinstance(size, (int, float)): size = [size]
    if isinstance(size, str):
        try: size = [int(s) for s in size.lower().replace(',', 'x').split('x')]
        except ValueError: size = []
    size = list(size)
    if len(size) == 1: size = size * 2
    if len(size) != 2 or min(size) < 8: raise ConfigError(f'--{what} {given!r}: use a size such as 224 or 256x192')
    return [int(s) for s in size]


def _images(comp, c, workdir, quiet):
    """A pre-resized copy (`comp resize`) big enough for the recipe's item resize, else None (the originals)."""
    from .resize import usable
    notes = []
    d = usable(comp, workdir, c['resize'][1], notes)
    if not quiet:
        for n in notes: print(n, flush=True)
    if d is not None and not quiet:
        print(f'using pre-resized images from {d} (large enough for {c["resize"][0]} '
              f'{"x".join(map(str, c["resize"][1]))})', flush=True)
    return str(d.resolve()) if d is not None else None


def train(cfg=None, workdir='.', resume=None, quiet=False, cbs=()):
    """Train one model; return its Run, whose `result` holds the validation error, timing and images/s.

    With `cfg.procs` N > 1, data-parallel on N processes (comp.distributed); under a launcher (torchrun, accelerate
    launch), as one of its processes. Either way one run directory, written by the first process only.
    `cbs`: more fastai callbacks for a one-process fit (comp auto's `callbacks.Deadline`)."""
    from . import distributed as dist
    if dist.launched(): return _train_as_rank(cfg, workdir, resume, quiet)
    run, c, comp = _prepare(cfg, workdir, resume, quiet)
    if c.get('procs', 1) > 1: return _train_procs(run, c, workdir, resume is not None, quiet)
    run.set_status('running')
    try:
        result = _train(c, comp, run, workdir, resume is not None, quiet, cbs)
    except BaseException as e:
        _record_stop(run, e)
        raise
    run.write_result(result)
    run.set_status('complete')
    return run


def _record_stop(run, e, lost=False):
    """Record why training stopped: Ctrl-C, or a partner process `lost`, leaves the run incomplete (resumable),
    anything else failed."""
    stopped = isinstance(e, KeyboardInterrupt) or lost
    if stopped: e.comp_run = run.name  # the CLI says how to resume it
    try: run.set_status('incomplete' if stopped else 'failed', error=(str(e) or type(e).__name__)[:500],
                        user_error=isinstance(e, CompError))
    except OSError: pass  # a full or read-only disk: the error being raised says so


def _prepare(cfg, workdir, resume, quiet):
    """(run, resolved config, competition): the run resumed, or a new one created once every check has passed."""
    from . import distributed as dist
    if resume is not None:
        run = runs.find(resume, workdir)
        _check_resume(run, cfg)
        c = run.config
        comp = competition.find(c['data'], workdir)
        _check_procs(c)
    else:
        cfg = cfg or TrainConfig()
        comp = competition.find(cfg.data, workdir)
        c = resolve(cfg, comp)
        import torch
        # Processes forked later cannot use a GPU this one started: then the first of them checks and records it.
        forks = c['procs'] > 1 and not dist.launched() and torch.cuda.is_available()
        if not forks: precision(c['precision'])  # a precision this machine cannot run fails before any run exists
        _check(c, comp, workdir)
        c['images'] = _images(comp, c, workdir, quiet)
        run = runs.create(workdir, c, device=not forks)
    return run, c, comp


def _train_procs(run, c, workdir, resuming, quiet):
    """The run trained by c['procs'] processes that accelerate's notebook_launcher starts; this one waits for them.

    A process that is killed ends the others (the launcher) and leaves the run incomplete, to resume."""
    from . import distributed as dist
    try:
        dist.launch(_spawned, c['procs'], (str(run.path), str(workdir), resuming, quiet))
    except dist.ProcessesFailed as e:
        rec = run.status_record()
        if e.killed or run.status == 'incomplete':
            try: run.set_status('incomplete', error=str(e)[:500])
            except OSError: pass
            raise CompError(f'training stopped: {e}; resume with `comp train --resume {run.name}`') from None
        if rec.get('status') == 'failed' and rec.get('user_error'): raise CompError(rec['error']) from None
        try: run.set_status('failed', error=str(e)[:500])
        except OSError: pass
        raise RuntimeError(f'training failed: {e}') from None
    except BaseException as e:
        _record_stop(run, e)
        raise
    if run.status != 'complete': raise CompError(f'run {run.name} ended without completing: see {run.status_file}')
    return runs.Run(run.path)


def _spawned(path, workdir, resuming, quiet):
    """One of the processes `_train_procs` starts."""
    from . import distributed as dist
    with dist.process_group(): _rank(path, workdir, resuming, quiet)


def _train_as_rank(cfg, workdir, resume, quiet):
    """One process of a group a launcher started (torchrun, accelerate launch): the first prepares the run (checks,
    run directory) and tells the others its folder, or the error that stopped it."""
    from . import distributed as dist
    with dist.process_group():
        path = err = None
        if dist.is_main():
            try: path = str(_prepare(cfg, workdir, resume, quiet)[0].path)
            except CompError as e: err = str(e)
        path, err = dist.broadcast((path, err))
        if err is not None: raise CompError(err)
        return _rank(path, workdir, resume is not None, quiet)


def _rank(path, workdir, resuming, quiet):
    """Train run `path` as this process's rank of the group; only the first process records (and prints)."""
    from . import distributed as dist
    run = runs.Run(path)
    c = run.config
    comp = competition.find(c['data'], workdir)
    main = dist.is_main()
    if main:
        run.set_status('running')
        if 'device' not in runs.read_env(run): runs.write_env(run)   # created by a process that left the GPU alone
    try:
        result = _train(c, comp, run, workdir, resuming, quiet or not main)
    except BaseException as e:
        # The first process often sees a killed partner before the launcher does: its error, not the kill, reaches
        # the launcher, so it records the run as stopped itself.
        if main: _record_stop(run, e, lost=dist.partner_lost(e))
        raise
    if main:
        run.write_result(result)
        run.set_status('complete')
    dist.barrier()   # every process returns a complete run
    return runs.Run(path)


def _check_procs(c):
    """The run's processes, against the GPUs here or the launcher's process count (a resumed run keeps its own)."""
    from . import distributed as dist
    procs = c.get('procs', 1)
    if dist.launched():
        if procs != dist.world():
            raise ConfigError(f'run {c.get("name")} trains on {procs} process{"es" if procs > 1 else ""}, but the '
                              f'launcher started {dist.world()}: launch {procs}')
    elif procs > 1: dist.check_procs(procs)


def _check(c, comp, workdir):
    """Everything about a resolved config that can be checked before a run exists, so a mistake leaves no failed run."""
    import math
    _check_procs(c)
    if c['lr'] != 'auto' and not (math.isfinite(c['lr']) and c['lr'] > 0):
        raise ConfigError(f'--lr {c["lr"]}: use a positive number such as 0.01, or auto')
    if c['workers'] < 0: raise ConfigError(f'--workers {c["workers"]}: use 0 (load in this process) or more')
    if c['pretrained'] and c.get('weights'): zoo.weights_file(c['arch'], c['weights'])
    if c.get('cache', True):
        from .cache import budget
        budget()  # a malformed COMP_DECODE_CACHE_GB fails now, not after the run folder exists
    n = len(comp.train_df())
    splits = c['folds'] >= 2 if c['folds'] else 0 <= c['valid_pct'] < 1  # else valid_ids says what is wrong
    n_train = n - math.ceil(n / c['folds'] if c['folds'] else n * c['valid_pct'])  # as sklearn sizes the split
    procs = c.get('procs', 1)
    n_train //= procs   # each process trains on its share
    each = f' each of the {procs} processes gets' if procs > 1 else ''
    if splits and c['bs'] > n_train:
        raise ConfigError(f'--bs {c["bs"]} is more than the {n_train} training images{each}: fastai drops the last '
                          f'partial batch, so no batch would train; use --bs {max(1, n_train // 4)} or less')
    # folds, fold, valid fraction and a stored split made for other images (the split is shared: writing it is fine)
    data.valid_ids(comp, workdir, c['seed'], c['valid_pct'], c['folds'], c['fold'])


def _check_resume(run, cfg):
    """A run can be resumed once, by one process, with its own saved config."""
    st = run.status
    if st == 'complete':
        missing = [f.name for f in (run.model_file, run.vocab_file, run.result_file) if not f.exists()]
        if missing: raise CompError(f'run {run.name} finished but its {", ".join(missing)} is missing: restore it '
                                    'from a backup, or train a new run with the same options')
        raise CompError(f'run {run.name} is already complete')
    if st == 'running':
        raise CompError(f'run {run.name} is still training in process {run.status_record().get("pid")}: '
                        'wait for it to finish, or stop that process and resume then')
    if cfg is not None:
        default = TrainConfig()
        given = [k for k in asdict(default) if getattr(cfg, k) != getattr(default, k)]
        if given:
            raise ConfigError(f'--resume continues run {run.name} with its saved config: drop '
                              f'{", ".join("--" + k.replace("_", "-") for k in given)} (or train a new run with them)')


def _train(c, comp, run, workdir, resuming, quiet, cbs=()):
    from .cache import release
    learn, p = training_learner(c, comp, run, workdir)
    learn.add_cbs(list(cbs))
    try: return _fit_and_record(learn, p, c, comp, run, resuming, quiet)
    finally: release(learn.dls)   # the next run in this process gets the memory


def _fit_and_record(learn, p, c, comp, run, resuming, quiet):
    from fastai.vision.all import minimum, slide, steep, valley
    from . import distributed as dist
    from .callbacks import RunLog
    main = dist.is_main()   # the only process that writes the run's records
    if not quiet: print(f'decode-once cache: {learn.dls.decode_cache}', flush=True)
    log = RunLog(run, quiet=quiet or sys.stdout.isatty(), record=main)
    learn.add_cb(log)
    from .averaging import for_config
    keeper = for_config(c, run)
    if keeper is not None: learn.add_cb(keeper)
    if c.get('sizes'):
        from .callbacks import ProgressiveResize
        learn.add_cb(ProgressiveResize(c['sizes'], c['epochs'] + (c['schedule'] == 'fine_tune'), c['bs'], c['accum']))
    if not sys.stdout.isatty() or quiet: no_bars(learn)
    done = 0
    if resuming and run.checkpoint_file.exists():
        try: learn.load(runs.CHECKPOINT, with_opt=True)
        except Exception as e:
            raise CompError(f'{run.checkpoint_file} cannot be read ({type(e).__name__}: it was cut short?): delete it '
                            f'to resume run {run.name} from its first epoch, or train a new run') from e
        done = run.epochs_done
    lr = c['lr']
    if lr == 'auto' and resuming and run.lr_find:
        # The run's own choice: lr_find on a half-trained model would pick another rate mid-schedule.
        found = run.lr_find
        lr = found['suggestions'][found['chosen']]
    elif lr == 'auto':
        funcs = (minimum, steep, valley, slide)
        if dist.launched():
            # lr_find on the first process alone (at the per-process batch); the others wait for its choice.
            # Under DDP each process would stop lr_find by its own checks, and fastai's Learner.load waits at a
            # barrier that only rank 0 (which saved the weights) reaches.
            with dist.first_alone(learn): lr = _lr_find(learn, run, funcs) if main else None
            lr = dist.broadcast(lr)
        else: lr = _lr_find(learn, run, funcs)
    t0 = time.time()
    fit(learn, c['schedule'], c['epochs'], lr, start=done)
    if dist.launched():
        dist.detach(learn)
        if not main: return None
        with dist.alone(): return _record(learn, p, c, comp, run, log, keeper, lr, t0)
    return _record(learn, p, c, comp, run, log, keeper, lr, t0)


def _record(learn, p, c, comp, run, log, keeper, lr, t0):
    """The trained run's weights, vocab, validation predictions, plots and result."""
    saved = keeper.finish() if keeper is not None else {'weights': 'last', 'ema': None, 'epochs': [run.epochs_done]}
    save_model(run.model_file, learn)
    run.clear_checkpoint()
    vocab = list(learn.dls.vocab[0] if c['target'] != 'disease' else learn.dls.vocab)
    run.write_vocab(vocab)
    has_valid = len(learn.dls.valid_ds) > 0
    valid = valid_preds(learn, comp, vocab) if has_valid else valid_preds(learn, comp, vocab, probs=_no_probs(vocab))
    run.write_preds('valid', valid)   # without a validation set, an empty frame: every reader finds the same file
    _plots(learn, run, valid if has_valid else None, vocab)
    secs = time.time() - t0
    n_train = len(learn.dls.train_ds)
    err = error(valid, vocab) if has_valid else None
    saved['valid_error'] = err   # of the weights saved, which predict loads
    extra = {} if has_valid else {'no_validation': NO_VALIDATION}
    return {'valid_error': err, **extra, 'saved_weights': saved, 'precision': p, 'lr': lr, 'decode_cache': learn.dls.decode_cache,
            'seconds': round(secs, 1),
            'seconds_per_epoch': log.seconds_per_epoch(), 'images_per_s': log.images_per_second(n_train),
            'n_train': n_train, 'n_valid': len(valid), 'device': str(learn.dls.device), 'procs': c.get('procs', 1)}


def save_model(path, learn):
    """The learner's weights and optimizer as fastai's `Learner.save` writes them, but atomically: a full disk or a
    kill leaves no half-written model."""
    from fastai.learner import save_model as fastai_save
    from .files import atomic_path
    with atomic_path(path) as tmp: fastai_save(tmp, learn.model, getattr(learn, 'opt', None))


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
    plt.savefig(run.lr_find_plot)
    plt.close('all')
    found = {f.__name__: float(v) for f, v in zip(funcs, sugg)}
    run.write_lr_find({'suggestions': found, 'chosen': 'valley'})
    return found['valley']


def _no_probs(vocab):
    import torch
    return torch.zeros(0, len(vocab))


def _plots(learn, run, valid, vocab):
    """The loss curves, and the confusion matrix of the validation set (none without one)."""
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt
    from sklearn.metrics import confusion_matrix
    learn.recorder.plot_loss(with_valid=valid is not None)
    plt.savefig(run.loss_plot)
    plt.close('all')
    if valid is None: return
    cm = confusion_matrix(valid['label'], [vocab[i] for i in valid[vocab].to_numpy().argmax(1)], labels=vocab)
    fig, ax = plt.subplots(figsize=(8, 8))
    ax.imshow(cm, cmap='Blues')
    ax.set(xticks=range(len(vocab)), yticks=range(len(vocab)), xlabel='predicted', ylabel='actual')
    ax.set_xticklabels(vocab, rotation=90)
    ax.set_yticklabels(vocab)
    for i in range(len(vocab)):
        for j in range(len(vocab)): ax.text(j, i, cm[i, j], ha='center', va='center', fontsize=8)
    fig.tight_layout()
    fig.savefig(run.confusion_plot)
    plt.close('all')
