"""`comp auto`: the whole job within a time budget. Probe each candidate recipe on this machine (comp.probe), plan
recipes, folds and epochs that fit (comp.plan), train the plan's steps in order (each a CV group, with its refit on
every training image when `refit` is asked, or a single run on the shared split: resumable, found again by their
configs), ensemble what finished with searched weights, write the submission and, when asked, submit it. The plan
and the outcome are saved in `auto/`; run again with the same arguments and at most the same hours, it goes on
with the saved plan.

A plan is a list of steps, each a dict with a `kind` (`cv`, `train`), its recipe, folds, epochs and estimates, and
`refit` on a CV step whose group also trains its refit (`comp.cv.cv(refit=True)`, resumed like its folds): running
a step is `STEPS[kind]`, so another kind of step is one more entry there (and its cost in comp.plan)."""
import math
import os
import time
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path

from . import competition, runs
from .config import total_epochs
from .errors import CompError, ConfigError
from .files import read_json, write_json
from .machine import alive, device, started
from .plan import FINAL_S, TTA, _hm, _too_short, describe, make_plan, margin
from .probe import PROBE_SHARE, _probe_all

AUTO_DIR = 'auto'                 # the plan and the last call's outcome, in the working folder
PLAN_FILE, RESULT_FILE = 'plan.json', 'outcome.json'
RUNNING_FILE = 'running.json'  # the process of a `comp auto` running here, while it runs
# Best quality first (Road to the Top, part 3: the large models won on Paddy), then smaller ones for short budgets.
CANDIDATES = ('convnext_large', 'vit_large', 'swinv2_large', 'swin_large', 'convnext_small', 'vit_small', 'swinv2_base')


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
    if submit and not dry_run:
        from . import kaggle
        kaggle.api()   # no credentials fails now, not after the whole budget
    with _one_at_a_time(workdir):
        try:
            plan = _plan(workdir, asked, comp, names, options, folds, tta, refit, budget, start, dry_run, echo)
            if dry_run: return {'plan': plan, 'steps': [], 'submission': None, 'dry_run': True}
            return _execute(plan, comp, workdir, start, budget, submit, message, quiet, echo)
        except KeyboardInterrupt as e:   # the CLI's hint: what resumes the whole job, not the step that was training
            e.comp_resume = 'resume with the same `comp auto` command (at most the same --hours): it goes on with its plan'
            raise


def _plan(workdir, asked, comp, names, options, folds, tta, refit, budget, start, dry_run, echo):
    """The plan in progress for these arguments, else a new one (from a dry run's probes when it made them for the
    same arguments here), printed; saved as the plan to go on with unless `dry_run` (then marked as a dry run's)."""
    saved = _saved_plan(workdir, asked)
    if saved is not None and not saved.get('dry_run'):
        echo(f'using the plan saved at {saved["created"]} for {_hm(saved["budget_s"])} ({_plan_file(workdir)}), '
             f'with {_hm(budget)} now')
        plan = saved
    else:
        if saved is not None:   # a dry run plans, it does not commit: its probes serve, the plan is made anew
            echo(f'using the probes of the dry run saved at {saved["created"]} ({_plan_file(workdir)})')
            probes = saved['probes']
            skipped = [s for s in saved['skipped'] if s['arch'] not in probes]
        else:
            cfgs = [_train_config(arch, comp, options) for arch in names]
            probes, skipped = _probe_all(cfgs, comp, workdir, PROBE_SHARE * budget, echo)
        plan = make_plan(probes, budget - (time.time() - start), len(comp.train_df()), len(comp.test_ids()),
                         folds, tta, options.get('valid_pct', 0.2), refit)
        plan.update(asked=asked, budget_s=budget, probe_s=round(time.time() - start, 1),
                    created=time.strftime('%Y-%m-%d %H:%M:%S'), **({'dry_run': True} if dry_run else {}))
        plan['estimate_s'] = round(plan['probe_s'] + plan['planned_s'], 1)
        plan['skipped'] = skipped + plan['skipped']
    for line in describe(plan): echo(line)
    if not plan['steps']: raise CompError(_too_short(plan))   # a plan without steps is not saved
    if plan is not saved: write_json(_plan_file(workdir), plan)
    return plan


def _budget(hours):
    try: h = float(hours)
    except (TypeError, ValueError): h = float('nan')
    if not (math.isfinite(h * 3600) and h > 0):   # 1e308 hours overflows to an endless budget
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
    return Path(workdir) / AUTO_DIR / PLAN_FILE


def _saved_plan(workdir, asked):
    """The saved plan when it was made for the same arguments on the same kind of machine and at least this budget,
    else None: a notebook run again after a stop, with the time it has left, goes on with the plan it started. A plan
    that cannot be read (edited by hand) is a CompError naming the file."""
    f = _plan_file(workdir)
    if not f.exists(): return None
    plan = read_json(f)
    try:
        old = plan['asked']
        same = _json({**old, 'hours': None}) == _json({**asked, 'hours': None})
        fits = float(asked['hours']) <= float(old['hours'])
        _check_plan(plan)
    except (KeyError, TypeError, ValueError, AttributeError) as e:
        raise CompError(f'{f} is damaged ({type(e).__name__}: {e}): delete it, and comp auto plans anew') from None
    return plan if same and fits else None


def _check_plan(plan):
    """What running a saved plan reads, of the types it reads: a KeyError, TypeError or ValueError otherwise."""
    for k in ('created', 'budget_s', 'tta', 'probes', 'skipped', 'steps'): plan[k]
    if not isinstance(plan['probes'], dict) or not all(isinstance(s['arch'], str) for s in plan['skipped']):
        raise TypeError('probes or skipped are not what a plan holds')
    for step in plan['steps']:
        if step['kind'] not in STEPS: raise ValueError(f'a step of kind {step["kind"]!r}')
        for k in ('arch', 'folds', 'epochs', 'estimate_s', 'tta_s', 'tail_s', 'epoch_s'): step[k]
        for k in ('folds', 'epochs', 'estimate_s', 'tta_s', 'tail_s', 'epoch_s'): float(step[k])
    float(plan['budget_s']), int(plan['tta'])


@contextmanager
def _one_at_a_time(workdir):
    """One `comp auto` at a time in a folder: this process is recorded in auto/, and a second one, while it lives
    (comp.machine.alive), is refused; the record of a process that died is taken over."""
    f = Path(workdir) / AUTO_DIR / RUNNING_FILE
    if f.exists():
        try: rec = read_json(f)
        except CompError: rec = {}   # damaged: no live process to protect
        pid = rec.get('pid') if isinstance(rec, dict) else None
        if pid != os.getpid() and alive(pid, rec.get('started')):
            raise CompError(f'comp auto is already running in this folder (process {pid}): wait for it to finish, or '
                            'stop that process and run comp auto again')
    write_json(f, {'pid': os.getpid(), 'started': started(os.getpid())})
    try: yield
    finally: f.unlink(missing_ok=True)


def _json(x):
    import json
    return json.dumps(x, sort_keys=True, default=str)


# Running the plan: each step in order while the budget has room for it, then the ensemble and the submission.

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
