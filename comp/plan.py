"""`comp auto`'s plan: which candidates, folds and epochs fit a time budget, from the probes' timings (comp.probe).
Pure arithmetic over the probes and the data's counts, so a plan can be checked at any budget without training: no
torch, fastai or training module is imported here. The reference is AutoGluon's presets with `time_limit`: the
best-quality recipe first, fewer epochs, then fewer folds, then the single shared split when time is short."""
import math

from .data import valid_size

TTA = 4                           # fastai's passes, when they fit
RECORD_S = 3.0                    # a run's records and plots after training (measured on 2 CPU cores: 1-2 s)
FINAL_S = 5.0                     # the ensemble's weight search and the submission's files
# Epochs as fractions of the recipe's. A fold count is cut when half its epochs do not fit; fewer than half the
# epochs only on the single split, the last resort (0: one epoch).
FRACTIONS, LAST_RESORT = (1, 0.75, 0.5), (0.33, 0.25, 0)


def margin(budget_s):
    """Seconds of the budget kept free of any estimate: estimates are a probe's, not a promise."""
    return 0.02 * budget_s + 5


def step_costs(p, kind, folds, epochs, n, n_test, valid_pct=0.2, tta=0, refit=False):
    """Estimated seconds of one step from its probe: `estimate_s` (training, the records, the plain test predictions),
    `epoch_s` (one epoch of one model), `tail_s` (what follows a model's last epoch) and `tta_s` (TTA predictions).
    With `refit`, a CV step's model on every training image (no validation) is in them too."""
    k = folds if kind == 'cv' else 1
    n_valid = valid_size(n, valid_pct, folds if kind == 'cv' else None)
    n_train = n - n_valid
    bs, tb, pb = p['bs'], p['train_batch_s'], p['predict_batch_s']
    valid, test = math.ceil(n_valid / bs) * pb, math.ceil(n_test / bs) * pb   # fastai drops no validation batch
    epoch = max(1, n_train // bs) * tb + valid + p['epoch_overhead_s']       # ...but the last partial training one
    predict_test = p['build_s'] + test
    tail = valid + p['save_s'] + RECORD_S + predict_test
    model = p['build_s'] + (epochs + p['frozen_epochs']) * epoch + tail
    tta_s = k * (p['build_s'] + (valid + test) * (tta + 1)) if tta else 0.0
    extra = 0.0
    if refit and kind == 'cv':
        whole = max(1, n // bs) * tb + p['epoch_overhead_s']
        extra = p['build_s'] + (epochs + p['frozen_epochs']) * whole + p['save_s'] + RECORD_S + predict_test
        if tta: tta_s += p['build_s'] + test * (tta + 1)
    return {'estimate_s': round(k * model + extra, 1), 'epoch_s': round(epoch, 2), 'tail_s': round(tail + (k - 1) * predict_test, 1),
            'tta_s': round(tta_s, 1)}


def fold_ladder(folds):
    """Fold counts to try, most first: the asked K, then 5 and 3 below it, then the single shared split (1)."""
    ks = [k for k in dict.fromkeys([folds, 5, 3]) if 3 <= k <= folds] or ([folds] if folds >= 2 else [])
    return [*ks, 1]


def levels(folds):
    """(folds, fraction of the recipe's epochs), best first."""
    ladder = fold_ladder(folds)
    return [(k, f) for k in ladder[:-1] for f in FRACTIONS] + [(1, f) for f in FRACTIONS + LAST_RESORT]


def _epochs(recipe_epochs, frac): return max(1, round(recipe_epochs * frac))


def _step(arch, p, k, frac, n, n_test, valid_pct, tta, refit=False):
    kind = 'cv' if k > 1 else 'train'
    epochs = _epochs(p['epochs'], frac)
    return {'kind': kind, 'arch': arch, 'folds': k, 'epochs': epochs, **({'refit': True} if refit and kind == 'cv' else {}),
            **step_costs(p, kind, k, epochs, n, n_test, valid_pct, tta, refit)}


def _cost(s): return s['estimate_s'] + s['tta_s']


def _attempt(probes, level, avail, n, n_test, valid_pct, tta, refit=False):
    """The candidates that fit at one level, best first, each taken while the budget has room for it."""
    steps, left = [], avail
    for arch, p in probes.items():
        s = _step(arch, p, *level, n, n_test, valid_pct, tta, refit)
        if _cost(s) <= left:
            steps.append(s)
            left -= _cost(s)
    return steps


def _search(probes, avail, n, n_test, folds, valid_pct, tta, refit=False):
    """(level index, steps): the first level at which two candidates (or all, if fewer) fit; failing that, the
    first at which one does (an ensemble of two beats one model trained longer, as AutoGluon's stacks do)."""
    want, fallback = min(2, len(probes)), (None, [])
    for i, level in enumerate(levels(folds)):
        steps = _attempt(probes, level, avail, n, n_test, valid_pct, tta, refit)
        if len(steps) >= want: return i, steps
        if steps and fallback[0] is None: fallback = (i, steps)
    return fallback


def make_plan(probes, budget_s, n, n_test, folds=5, tta=TTA, valid_pct=0.2, refit=False):
    """The plan for `budget_s` seconds: steps (best-quality recipe first) that fit with the reserve for the ensemble,
    the submission, TTA when it costs no training, and a margin. `n`, `n_test`: training and test images."""
    avail = budget_s - FINAL_S - margin(budget_s)
    plain = _search(probes, avail, n, n_test, folds, valid_pct, 0, refit)
    with_tta = _search(probes, avail, n, n_test, folds, valid_pct, tta, refit) if tta else (None, [])
    # TTA only when it costs no training: the same level and as many steps as without it.
    use_tta = tta and with_tta[0] is not None and with_tta[0] == plain[0] and len(with_tta[1]) == len(plain[1])
    level, steps = with_tta if use_tta else plain
    tta = tta if use_tta else 0
    if steps:   # time left over goes back to epochs, best recipe first
        k = steps[0]['folds']
        for i, s in enumerate(steps):
            for frac in FRACTIONS:
                up = _step(s['arch'], probes[s['arch']], k, frac, n, n_test, valid_pct, tta, refit)
                if up['epochs'] <= s['epochs']: break
                if sum(map(_cost, steps)) - _cost(s) + _cost(up) <= avail:
                    steps[i] = s = up
                    break
    chosen = {s['arch'] for s in steps}
    lvl = levels(folds)[level] if level is not None else None
    skipped = [{'arch': a, 'why': 'does not fit the budget with the others' + (f' at {lvl[0]} fold(s)' if lvl else '')}
               for a in probes if a not in chosen]
    planned = sum(map(_cost, steps)) + FINAL_S
    return {'steps': steps, 'tta': tta, 'skipped': skipped, 'probes': probes, 'n_train': n, 'n_test': n_test,
            'valid_pct': valid_pct, 'planned_s': round(planned, 1), 'margin_s': round(margin(budget_s), 1)}


def describe(plan):
    """The plan as lines to print."""
    b = plan.get('budget_s')
    out = [f'plan for {_hm(b)} on {plan.get("asked", {}).get("device", "this machine")}'
           f' (probes {_hm(plan.get("probe_s", 0))}):' if b else 'plan:']
    for i, s in enumerate(plan['steps'], 1):
        what = f'{s["folds"]}-fold CV' + (' + refit' if s.get('refit') else '') if s['kind'] == 'cv' else 'one run on the shared split'
        out.append(f'  {i}. {s["arch"]}: {what}, {s["epochs"]} epoch{"s" if s["epochs"] > 1 else ""}, about {_hm(s["estimate_s"] + s["tta_s"])}')
    for s in plan['skipped']: out.append(f'  skipped {s["arch"]}: {s["why"]}')
    out.append(f'  then: {"TTA " + str(plan["tta"]) + " passes, " if plan["tta"] else ""}the ensemble (weights searched), '
               f'the submission')
    if b: out.append(f'  estimated {_hm(plan["estimate_s"])} of {_hm(b)} (margin {_hm(plan["margin_s"])})')
    return out


def _too_short(plan):
    p = plan['probes']
    if not p: return 'no candidate could be probed: ' + _reasons(plan['skipped'])
    n, n_test = plan['n_train'], plan['n_test']
    least = min(_cost(_step(a, q, 1, 0, n, n_test, plan['valid_pct'], 0)) for a, q in p.items())
    need = (least + FINAL_S + plan['probe_s'] + 5) / 0.98
    return (f'no candidate fits {_hm(plan["budget_s"])}: the quickest needs about {_hm(need)} for one epoch on the '
            f'shared split; give --hours {math.ceil(need / 36) / 100:g} or more, or quicker --candidates')


def _reasons(skipped):
    """Why candidates were skipped, each reason said once for all the candidates it holds for (seven candidates
    without weights: one line naming them, with the ways out once)."""
    said = {}
    for s in skipped: said.setdefault(s['why'].replace(s['arch'], '\0'), []).append(s['arch'])
    return '; '.join(why.replace('\0', ', '.join(archs)) if '\0' in why else f'{", ".join(archs)}: {why}'
                     for why, archs in said.items())


def _hm(s):
    s = float(s or 0)
    if s < 90: return f'{s:.0f} s'
    if s < 5400: return f'{s / 60:.1f} min'
    return f'{s / 3600:.1f} h'
