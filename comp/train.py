"""train(cfg) -> Run: the config resolved from the recipe, the schedule, and everything the run records."""
import sys
import time

from . import competition, data, plots, runs, zoo
from .config import TrainConfig, flag, given, resolve, split_key, total_epochs
from .errors import CompError, ConfigError
from .learner import error, no_bars, precision, save_model, training_learner, valid_preds

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


def train(cfg=None, workdir='.', resume=None, quiet=False, cbs=(), created=None):
    """Train one model; return its Run, whose `result` holds the validation error, timing and images/s.

    With `cfg.procs` N > 1, data-parallel on N processes (comp.distributed); under a launcher (torchrun, accelerate
    launch), as one of its processes. Either way one run directory, written by the first process only.
    `cbs`: more fastai callbacks for a one-process fit (comp auto's `callbacks.Deadline`). `created(run)` is called
    as soon as the run exists (a CV group records its fold then, so an interrupted fold is still the group's)."""
    from . import distributed as dist
    if dist.launched():
        return dist.train_as_rank(lambda: _prepare(cfg, workdir, resume, quiet)[0], fit_run, workdir, resume is not None, quiet)
    run, c, comp = _prepare(cfg, workdir, resume, quiet)
    if created is not None: created(run)
    if c['procs'] > 1: return dist.train_procs(run, c['procs'], fit_run, workdir, resume is not None, quiet)
    run.set_status('running')
    try:
        result = fit_run(c, comp, run, workdir, resume is not None, quiet, cbs)
    except BaseException as e:
        run.record_stop(e)
        raise
    run.write_result(result)
    run.set_status('complete')
    return run


def _prepare(cfg, workdir, resume, quiet):
    """(run, resolved config, competition): the run resumed, or a new one created once every check has passed."""
    from . import distributed as dist
    if resume is not None:
        run = runs.find(resume, workdir)
        _check_resume(run, cfg)
        _check_saved_state(run)
        c = run.config
        comp = competition.find(c['data'], workdir)
        dist.check_run(c)
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


def _check(c, comp, workdir):
    """Everything about a resolved config and this machine that can be checked before a run exists, so a mistake
    leaves no failed run (each setting's own check is in `config.resolve`)."""
    from . import distributed as dist
    dist.check_run(c)
    if c['teacher']:
        from . import distill
        c['teacher_images'] = distill.check(c, comp, workdir)
    if c['pretrained'] and c['weights']: zoo.weights_file(c['arch'], c['weights'])
    if c['cache']:
        from .cache import budget
        budget()  # a malformed COMP_DECODE_CACHE_GB fails now, not after the run folder exists
    n = len(comp.train_df())
    splits = c['folds'] >= 2 if c['folds'] else 0 <= c['valid_pct'] < 1  # else valid_ids says what is wrong
    n_train = n - data.valid_size(n, c['valid_pct'], c['folds'])
    procs = c['procs']
    n_train //= procs   # each process trains on its share
    each = f' each of the {procs} processes gets' if procs > 1 else ''
    if splits and c['bs'] > n_train:
        raise ConfigError(f'--bs {c["bs"]} is more than the {n_train} training images{each}: fastai drops the last '
                          f'partial batch, so no batch would train; use --bs {max(1, n_train // 4)} or less')
    # folds, fold, valid fraction and a stored split made for other images (the split is shared: writing it is fine)
    valid = data.valid_ids(comp, workdir, **split_key(c))
    if c.get('drop'):
        left = (n - len(valid) - len(data.drop_ids(c['drop'], comp) - valid)) // procs
        if c['bs'] > left:
            raise ConfigError(f'--drop leaves {left} training images{each}, fewer than --bs {c["bs"]}, so no batch would '
                              f'train: drop fewer images{f" or use --bs {left // 4}" if left >= 4 else ""}')


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
        asked = given(cfg)
        if asked:
            raise ConfigError(f'--resume continues run {run.name} with its saved config: drop '
                              f'{", ".join(map(flag, asked))} (or train a new run with them)')


def _check_saved_state(run):
    """A resumed run's checkpoint and weight-averaging state, read whole (their zip checksums) before its status
    changes: a damaged one is said in one line and the run stays incomplete, resumable once the file is deleted."""
    import zipfile
    for f in (run.checkpoint_file, run.averaging_file):
        if not f.exists(): continue
        try:
            with zipfile.ZipFile(f) as z: bad = z.testzip()
        except (zipfile.BadZipFile, EOFError) as e: bad = e
        if bad is not None:
            from .averaging import damaged_state
            raise damaged_state(run, f)


def fit_run(c, comp, run, workdir, resuming, quiet, cbs=()):
    """Build run `run`'s learner from its resolved config `c`, fit it (from its checkpoint when `resuming`) and return
    the result to record; in a data-parallel run, this process's share (only the first process records)."""
    from .cache import release
    from . import distill
    learn, p = training_learner(c, comp, run, workdir, distill.student(c, comp, workdir) if c.get('teacher') else None)
    from .trackers import tracking
    learn.add_cbs(list(cbs))
    try:
        with tracking(c, run, learn): return _fit_and_record(learn, p, c, comp, run, resuming, quiet)   # --tracker
    finally: release(learn.dls)   # the next run in this process gets the memory


def _fit_and_record(learn, p, c, comp, run, resuming, quiet):
    from fastai.vision.all import minimum, slide, steep, valley
    from . import distributed as dist
    from .callbacks import RunLog
    main = dist.is_main()   # the only process that writes the run's records
    if not quiet: print(f'decode-once cache: {learn.dls.decode_cache}', flush=True)
    if c.get('drop') and not quiet: print(dropped_note(c['drop'], learn.dls.dropped), flush=True)
    if c.get('teacher') and not quiet: print(teacher_note(c), flush=True)
    log = RunLog(run, quiet=quiet or sys.stdout.isatty(), record=main)
    learn.add_cb(log)
    from .averaging import for_config
    keeper = for_config(c, run)
    if keeper is not None: learn.add_cb(keeper)
    if c['sizes']:
        from .callbacks import ProgressiveResize
        learn.add_cb(ProgressiveResize(c['sizes'], total_epochs(c), c['bs'], c['accum']))
    if not sys.stdout.isatty() or quiet: no_bars(learn)
    done = 0
    if resuming and run.checkpoint_file.exists():
        try: learn.load(runs.CHECKPOINT, with_opt=True)
        except Exception as e:
            from .averaging import damaged_state
            raise damaged_state(run, run.checkpoint_file) from e
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
    vocab = comp.vocab() if comp.task in ('regression', 'ordinal') else \
        list(learn.dls.vocab[0] if c['target'] != 'disease' else learn.dls.vocab)
    run.write_vocab(vocab)
    has_valid = len(learn.dls.valid_ds) > 0
    valid = valid_preds(learn, comp, vocab) if has_valid else valid_preds(learn, comp, vocab, probs=_no_probs(vocab))
    run.write_preds('valid', valid)   # without a validation set, an empty frame: every reader finds the same file
    plots.save(learn, run, valid if has_valid else None, vocab, comp.task)
    secs = time.time() - t0
    n_train = len(learn.dls.train_ds)
    err = error(valid, vocab, comp) if has_valid else None
    saved['valid_error'] = err   # of the weights saved, which predict loads
    extra = {} if has_valid else {'no_validation': data.NO_VALIDATION}
    if has_valid: extra.update(metric=comp.metric, valid_score=comp.score(valid, vocab, comp.fit_decode(valid, vocab)))
    return {'valid_error': err, **extra, 'saved_weights': saved, 'precision': p, 'lr': lr, 'decode_cache': learn.dls.decode_cache,
            'seconds': round(secs, 1),
            'seconds_per_epoch': log.seconds_per_epoch(), 'images_per_s': log.images_per_second(n_train),
            'n_train': n_train, 'n_valid': len(valid), 'device': str(learn.dls.device), 'procs': c['procs'],
            **({'dropped': learn.dls.dropped} if c.get('drop') else {})}


def dropped_note(record, dropped):
    """What `--drop` did to a run, in a line: the images left out of training and those kept in validation."""
    kept = dropped['kept_in_valid']
    return (f'--drop {record["file"]}: {dropped["train"]} training images left out; ' +
            (f'{kept} more it lists are validation images and stay in validation (the split is shared by every run)'
             if kept else 'none of the images it lists is in validation'))


def teacher_note(c):
    """What a student learns from its teacher, in a line (`teacher_images`, recorded by comp.distill.check)."""
    t = c.get('teacher_images') or {}
    test = f'; {t["test"]} test images with its test probabilities alone' if t.get('test') else ''
    return (f'distilling from {c["teacher"]} (T {c["distill_t"]:g}, alpha {c["distill_alpha"]:g}): {t.get("with")} training '
            f'images with its out-of-fold probabilities, {t.get("without")} with their label alone{test}')


def fit(learn, schedule, epochs, lr, start=0, freeze_epochs=1):
    """fastai's fine_tune (frozen epoch, then discriminative lr) or fit_one_cycle, resumable at epoch `start`.

    Epochs are counted across both phases of fine_tune, so `start` is the number of epochs already done."""
    from .callbacks import set_epochs_before
    if schedule == 'one_cycle':
        set_epochs_before(learn, 0)
        learn.unfreeze()
        learn.fit_one_cycle(epochs, lr, start_epoch=start)
        return
    # The same calls as fastai's Learner.fine_tune, split so a resumed run can skip done epochs.
    if start < freeze_epochs:
        set_epochs_before(learn, 0)
        learn.freeze()
        learn.fit_one_cycle(freeze_epochs, slice(lr), pct_start=0.99, start_epoch=start)
    set_epochs_before(learn, freeze_epochs)
    learn.unfreeze()
    base = lr / 2
    learn.fit_one_cycle(epochs, slice(base / 100, base), pct_start=0.3, div=5.0,
                        start_epoch=max(0, start - freeze_epochs))


def _lr_find(learn, run, funcs):
    import matplotlib
    matplotlib.use('Agg')   # lr_find draws its plot: no display needed
    # fastai's 100 iterations, or about five epochs on a small dataset.
    sugg = learn.lr_find(num_it=min(100, max(20, 5 * len(learn.dls.train))), suggest_funcs=funcs, show_plot=True)
    plots.current(run.lr_find_plot)
    found = {f.__name__: float(v) for f, v in zip(funcs, sugg)}
    run.write_lr_find({'suggestions': found, 'chosen': 'valley'})
    return found['valley']


def _no_probs(vocab):
    import torch
    return torch.zeros(0, len(vocab))
