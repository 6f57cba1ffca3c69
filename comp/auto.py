"""`comp auto`: the whole job within a time budget. Probe each candidate recipe on this machine, plan recipes, folds
and epochs that fit (AutoGluon's presets with `time_limit` are the reference: best-quality recipe first, fewer
folds and epochs when time is short), train the plan's steps in order (each a CV group, or a single run on the
shared split: resumable, found again by their configs), ensemble what finished with searched weights, write the
submission and, when asked, submit it.

A plan is a list of steps, each a dict with a `kind` (`cv`, `train`): running a step is `STEPS[kind]`, so another
kind of step (a refit on all the data) is one more entry."""
import math
import time
from dataclasses import replace

from . import competition, runs
from .config import total_epochs
from .errors import CompError, ConfigError
from .files import read_json, write_json
from .machine import device
from .plan import FINAL_S, TTA, _hm, _too_short, describe, make_plan, margin

AUTO_DIR = 'auto'                 # the plan and the last call's outcome, in the working folder
PLAN_FILE, RESULT_FILE = 'plan.json', 'outcome.json'
# Best quality first (Road to the Top, part 3: the large models won on Paddy), then smaller ones for short budgets.
CANDIDATES = ('convnext_large', 'vit_large', 'swinv2_large', 'swin_large', 'convnext_small', 'vit_small', 'swinv2_base')
PROBE_SHARE = 0.1                 # the probes may take at most this share of the budget
PROBE_BATCHES = (10, 4)           # training and validation batches timed per candidate (fewer if the data has fewer)


def auto(hours, candidates=None, folds=5, submit=False, dry_run=False, tta=TTA, message=None, workdir='.',
         data=None, quiet=False, echo=print, refit=False, **options):
    """Probe, plan, train, ensemble and write the submission within `hours`; return the record (`plan`, `steps`,
    `submission`, `elapsed_s`). `options` are TrainConfig values for every candidate (`pretrained`, `weights`,
    `size`, `workers`, ...). Run again with the same arguments and at most the same `hours` (a notebook stopped
    early, with the time it has left), it goes on with the saved plan: finished steps are kept as they are, an
    interrupted one resumes; more `hours` make a new plan, which still finds the steps it shares with the old."""
    start = time.time()
    budget = _budget(hours)
    comp = competition.find(data, workdir)
    names = _candidates(candidates)
    if folds is None or folds < 1: raise ConfigError(f'--folds {folds}: use 1 (the single shared split) or more')
    if tta < 0: raise ConfigError(f'--tta {tta}: use 0 (none) or a number of passes such as 4')
    from .config import defaults, resolve
    default = defaults()
    # Options left at their defaults are not asked for: the same run of `comp auto` from the CLI or a notebook.
    options = {k: v for k, v in sorted(options.items()) if k not in default or default[k] != v}
    asked = {'hours': hours, 'candidates': names, 'folds': folds, 'tta': tta, 'data': str(comp.path),
             'options': options, 'device': device(), **({'refit': True} if refit else {})}
    c = resolve(_train_config(names[0], comp, options), comp)   # a bad option fails before any probe
    if folds > 1:   # too many folds for the labels' counts fails now, not at the first step
        from .data import valid_ids
        valid_ids(comp, workdir, c['seed'], c['valid_pct'], folds, 0)
    plan = _saved_plan(workdir, asked)
    if plan is not None:
        echo(f'using the plan saved at {plan["created"]} for {_hm(plan["budget_s"])} ({_plan_file(workdir)}), '
             f'with {_hm(budget)} now')
    else:
        probes, skipped = _probe_all(names, comp, workdir, options, PROBE_SHARE * budget, echo)
        plan = make_plan(probes, budget - (time.time() - start), len(comp.train_df()), len(comp.test_ids()),
                         folds, tta, options.get('valid_pct', 0.2), refit)
        plan.update(asked=asked, budget_s=budget, probe_s=round(time.time() - start, 1),
                    created=time.strftime('%Y-%m-%d %H:%M:%S'))
        plan['estimate_s'] = round(plan['probe_s'] + plan['planned_s'], 1)
        plan['skipped'] = skipped + plan['skipped']
        write_json(_plan_file(workdir), plan)
    for line in describe(plan): echo(line)
    if not plan['steps']: raise CompError(_too_short(plan))
    if dry_run: return {'plan': plan, 'steps': [], 'submission': None, 'dry_run': True}
    return _execute(plan, comp, workdir, start, budget, submit, message, quiet, echo)


def _budget(hours):
    try: h = float(hours)
    except (TypeError, ValueError): h = float('nan')
    if not (math.isfinite(h) and h > 0):
        raise ConfigError(f'--hours {hours}: use a positive number of hours, such as 12 (a Kaggle GPU notebook) or 0.5')
    return h * 3600


def _candidates(candidates):
    from . import zoo
    if candidates is None: names = list(CANDIDATES)
    else: names = [c.strip() for c in (candidates.split(',') if isinstance(candidates, str) else candidates) if c.strip()]
    if not names: raise ConfigError('--candidates is empty: give recipes from `comp zoo`, best first, e.g. convnext_small,vit_small')
    for n in names: zoo.recipe(n)   # an unknown name fails with "did you mean"
    if len(set(names)) < len(names): raise ConfigError(f'--candidates {",".join(names)}: name each recipe once')
    return names


def _train_config(arch, comp, options, **kw):
    """The TrainConfig of a candidate, with the user's options (an unknown option is a ConfigError)."""
    from dataclasses import fields
    from .config import TrainConfig
    known = {f.name for f in fields(TrainConfig)}
    bad = sorted(set(options) - known)
    if bad: raise ConfigError(f'unknown training option {bad[0]!r}: use TrainConfig fields such as pretrained, size, workers')
    fixed = sorted({'arch', 'folds', 'fold', 'epochs', 'data'} & set(options))
    if fixed: raise ConfigError(f'comp auto chooses {fixed[0]} itself: drop it')
    return TrainConfig(arch=arch, data=str(comp.path), **{**options, **kw})


def _plan_file(workdir):
    from pathlib import Path
    return Path(workdir) / AUTO_DIR / PLAN_FILE


def _saved_plan(workdir, asked):
    """The saved plan when it was made for the same arguments on the same kind of machine and at least this budget,
    else None: a notebook run again after a stop, with the time it has left, goes on with the plan it started."""
    f = _plan_file(workdir)
    if not f.exists(): return None
    plan = read_json(f)
    old = plan.get('asked') or {}
    same = _json({**old, 'hours': None}) == _json({**asked, 'hours': None})
    return plan if same and float(asked['hours']) <= float(old.get('hours', 0)) else None


def _json(x):
    import json
    return json.dumps(x, sort_keys=True, default=str)


# Probing: a few batches of training and a validation pass of each candidate, timed; nothing saved.

def _probe_all(names, comp, workdir, options, share, echo):
    """({arch: probe}, skipped): every candidate that can train here timed, until the probes took `share` seconds."""
    probes, skipped = {}, []
    for arch in names:
        if sum(p['probe_s'] for p in probes.values()) > share:
            skipped.append({'arch': arch, 'why': 'not probed: the probes used their share of the budget'})
            continue
        cfg = _train_config(arch, comp, options)
        why = _unavailable(cfg)
        if why:
            skipped.append({'arch': arch, 'why': why})
            echo(f'skipping {arch}: {why}')
            continue
        try: p = probe(cfg, comp, workdir)
        except (RuntimeError, MemoryError) as e:   # out of GPU memory at the recipe's batch size, say
            why = f'its probe failed ({type(e).__name__}: {(str(e).splitlines() or [""])[0][:120]})'
            skipped.append({'arch': arch, 'why': why})
            echo(f'skipping {arch}: {why}')
            continue
        finally: _free_gpu()
        probes[arch] = p
        echo(f'probed {arch}: {1 / p["train_s"]:.0f} training images/s, {1 / p["predict_s"]:.0f} predicted images/s '
             f'({p["probe_s"]:.0f}s)')
    return probes, skipped


def _free_gpu():
    """Give the probe's GPU memory back before the next candidate's."""
    import gc
    import torch
    gc.collect()
    if torch.cuda.is_available(): torch.cuda.empty_cache()


def _unavailable(cfg):
    """Why a candidate cannot train here (its pretrained weights are neither given, cached nor downloadable), or None."""
    from . import zoo
    from .config import resolve
    c = resolve(cfg)
    if not c['pretrained']: return None
    try:
        if c.get('weights'): zoo.weights_file(c['arch'], c['weights'])
        else: zoo.check_hub(c['arch'])
    except ConfigError as e: return str(e)
    return None


def probe(cfg, comp, workdir='.', batches=PROBE_BATCHES):
    """Time `cfg`'s recipe on this machine: seconds per training image and per predicted image (the first batch of
    each, which starts the loaders and decodes, is timed apart as per-epoch overhead), building the learner, saving
    the weights. Random weights (the speed is the same) in a temporary folder: no run is made."""
    import tempfile
    from pathlib import Path
    from .cache import release
    from .config import resolve
    from .learner import no_bars, save_model, training_learner
    t0 = time.time()
    c = resolve(cfg, comp)
    with tempfile.TemporaryDirectory(prefix='comp-probe-') as tmp:
        learn, _ = training_learner({**c, 'pretrained': False}, comp, tmp, workdir)
        built = time.time()
        try:
            no_bars(learn)
            # At most half an epoch's batches, so a probe costs less than the epoch it estimates.
            timer = _timer(*(max(2, min(b, len(dl) // 2)) for b, dl in zip(batches, (learn.dls.train, learn.dls.valid))))
            learn.fit(1, lr=c['lr'] if c['lr'] != 'auto' else 1e-3, cbs=[timer])
            t = time.time()
            save_model(Path(tmp) / 'probe.pth', learn)
            save_s = time.time() - t
        finally: release(learn.dls)
    tr, va = timer.rate(True), timer.rate(False)
    return {'arch': c['name'], 'bs': c['bs'], 'train_batch_s': tr[0], 'predict_batch_s': va[0],
            'train_s': tr[0] / c['bs'], 'predict_s': va[0] / c['bs'],
            'epoch_overhead_s': round(tr[1] + va[1] + save_s, 3),
            'build_s': round(built - t0, 3), 'save_s': round(save_s, 3), 'epochs': c['epochs'],
            'frozen_epochs': int(c['schedule'] == 'fine_tune'), 'batches': [tr[2], va[2]], 'probe_s': round(time.time() - t0, 1)}


def _timer(n_train, n_valid):
    """A fastai callback that times the first `n_train` training and `n_valid` validation batches, then ends each."""
    import torch
    from fastai.callback.core import Callback, CancelTrainException, CancelValidException
    from fastai.torch_core import find_bs

    class Timer(Callback):
        order = 100

        def __init__(self): self.marks, self.starts = {True: [], False: []}, {}

        def before_train(self): self.starts[True] = time.time()

        def before_validate(self): self.starts[False] = time.time()

        def after_batch(self):
            if torch.cuda.is_available(): torch.cuda.synchronize()   # the batch's work done, not only queued
            m = self.marks[self.training]
            m.append((time.time(), find_bs(self.yb)))
            if len(m) >= (n_train if self.training else n_valid):
                raise CancelTrainException() if self.training else CancelValidException()

        def rate(self, training):
            """(seconds per batch, first-batch overhead in seconds, batches timed). Per batch, not per image: a
            small last batch costs about as much as a full one (a small data set's validation may have no other)."""
            m, t0 = self.marks[training], self.starts[training]
            if len(m) < 2: return m[0][0] - t0, 0.0, len(m)
            per = (m[-1][0] - m[0][0]) / (len(m) - 1)
            return per, max(0.0, m[0][0] - t0 - per), len(m)

    return Timer()


# Running the plan.

def _execute(plan, comp, workdir, start, budget, submit, message, quiet, echo):
    from .callbacks import DeadlineReached
    end = start + budget
    reserve = FINAL_S + margin(budget)
    ratio, done, record = 1.0, [], []
    for i, step in enumerate(plan['steps'], 1):
        t0 = time.time()
        found = _find(step, plan, comp, workdir)
        todo = _todo(found, step)
        need = ratio * (todo * step['estimate_s'] + step['tta_s'])
        left = end - t0 - reserve - sum(s['tta_s'] for s, _ in done)
        rec = {'step': i, **{k: step[k] for k in ('kind', 'arch', 'folds', 'epochs')}, 'estimate_s': step['estimate_s']}
        if todo == 0:
            echo(f'step {i} ({step["arch"]}): {found.name} already complete')
            done.append((step, found))
            record.append({**rec, 'run': found.name, 'status': 'complete', 'seconds': 0})
            continue
        if need > left:
            echo(f'step {i} ({step["arch"]}): skipped, it needs about {_hm(need)} and {_hm(max(left, 0))} are left')
            record.append({**rec, 'status': 'skipped', 'why': f'needs {need:.0f}s, {max(left, 0):.0f}s left'})
            continue
        echo(f'step {i} ({step["arch"]}): {"resuming " + found.name if found else "training"}, about {_hm(need)}')
        deadline = _deadline(end - reserve - sum(s['tta_s'] for s, _ in done) - step['tta_s'] - ratio * step['tail_s'],
                             ratio * step['epoch_s'])
        try:
            run = STEPS[step['kind']](step, plan, comp, workdir, found, [deadline], quiet, echo)
        except DeadlineReached as e:
            echo(f'step {i} ({step["arch"]}): {e}')
            record.append({**rec, 'status': 'stopped', 'why': str(e), 'seconds': round(time.time() - t0, 1)})
            continue
        except CompError as e:   # a diverged loss, say: the other steps still have their time
            echo(f'step {i} ({step["arch"]}): failed: {e}')
            record.append({**rec, 'status': 'failed', 'why': str(e), 'seconds': round(time.time() - t0, 1)})
            continue
        secs = time.time() - t0
        # Later estimates follow how this machine kept to the probe's (never below 3/4 of it).
        ratio = max(0.75, secs / max(todo * step['estimate_s'], 1e-9))
        done.append((step, run))
        record.append({**rec, 'run': run.name, 'status': 'complete', 'seconds': round(secs, 1)})
    if not done:
        raise CompError(f'no step finished within {_hm(budget)}: run `comp auto` again with the same options to '
                        'resume, with more --hours')
    out = _finish(plan, done, comp, workdir, end, ratio, submit, message, echo)
    out.update(plan=plan, steps=record, elapsed_s=round(time.time() - start, 1), budget_s=budget)
    write_json(_plan_file(workdir).with_name(RESULT_FILE), out)
    return out


def _deadline(until, epoch_s):
    from .callbacks import Deadline
    return Deadline(until, epoch_s, what="comp auto's deadline")


def _todo(found, step):
    """The fraction of a step still to train: 1 when nothing of it exists, 0 when it is complete."""
    if found is None: return 1.0
    if step['kind'] == 'cv' and step.get('refit') and found.refit is None:   # a group finished before, without its refit
        return (1 + sum(m is None or m.status != 'complete' for m in found.members)) / (step['folds'] + 1)
    if found.status == 'complete': return 0.0
    if step['kind'] == 'cv':
        left = sum(m is None or m.status != 'complete' for m in found.members)
        if step.get('refit'): left += found.refit is None or found.refit.status != 'complete'
        return left / (step['folds'] + bool(step.get('refit')))
    total = total_epochs(found.config)
    return max(0.0, 1 - found.epochs_done / total)


def _config(step, plan, comp):
    return _train_config(step['arch'], comp, plan['asked']['options'], epochs=step['epochs'])


def _find(step, plan, comp, workdir):
    """The run or CV group this step trained before (complete, or incomplete to resume), found by its config."""
    from .config import resolve
    cfg = _config(step, plan, comp)
    if step['kind'] == 'cv': return runs.trained(resolve(replace(cfg, folds=step['folds'], fold=0), comp), workdir, kind='cv')
    return runs.trained(resolve(cfg, comp), workdir)


def _cv_step(step, plan, comp, workdir, found, cbs, quiet, echo):
    from . import cv
    refit = bool(step.get('refit'))
    if found is not None: return cv.cv(None, workdir=workdir, resume=found, quiet=quiet, echo=echo, cbs=cbs, refit=refit)
    return cv.cv(_config(step, plan, comp), folds=step['folds'], workdir=workdir, quiet=quiet, echo=echo, cbs=cbs,
                 refit=refit)


def _train_step(step, plan, comp, workdir, found, cbs, quiet, echo):
    from . import predict, train
    if found is not None: run = train.train(None, workdir=workdir, resume=found, quiet=quiet, cbs=cbs)
    else: run = train.train(_config(step, plan, comp), workdir=workdir, quiet=quiet, cbs=cbs)
    predict.predictions(run, workdir=workdir, comp=comp)   # the test predictions, as a CV group makes its own
    return run


# What each kind of step runs: (step, plan, comp, workdir, found, callbacks, quiet, echo) -> the Run it made.
STEPS = {'cv': _cv_step, 'train': _train_step}


def _finish(plan, done, comp, workdir, end, ratio, submit, message, echo):
    """The ensemble of the finished steps (or the one), with TTA when it still fits; the submission; the upload."""
    from . import ensemble, predict
    names = [r.name for _, r in done]
    tta = plan['tta']
    if tta and time.time() + ratio * sum(s['tta_s'] for s, _ in done) + FINAL_S > end:
        echo('no time left for TTA: predicting without it')
        tta = 0
    if len(done) > 1:
        rec = ensemble.ensemble(names, tta=tta, search_weights=True, workdir=workdir)
        echo(f'ensemble of {len(names)}: validation error {rec["valid_error"]:.4f} (weights '
             + ', '.join(f'{w:.2f}' for w in rec['weights']) + ')')
    else:
        rec = predict.predict(names[0], tta=tta, workdir=workdir)
        err = rec['valid_error_tta'] if tta else rec['valid_error']
        echo(f'{names[0]}: validation error {err:.4f}')
    out = {'runs': names, 'tta': tta, 'valid_error': rec.get('valid_error_tta') if len(done) == 1 and tta else rec.get('valid_error'),
           'submission': str(rec['submission'])}
    echo(f'submission: {rec["submission"]}')
    if submit:
        from . import kaggle
        msg = message or 'comp auto: ' + ' + '.join(f'{s["arch"]} {s["kind"]}{s["folds"] if s["kind"] == "cv" else ""} '
                                                    f'x{s["epochs"]}' for s, _ in done) + (f', TTA {tta}' if tta else '')
        out['kaggle'] = kaggle.submit(rec['submission'], msg, workdir=workdir, echo=echo)
    return out
