"""Ensembles of runs: weighted averages of their probabilities (or a stacked model), validated on the shared split."""
import numpy as np

from . import competition, runs, submission
from .blending import ROUNDS, STACK_C, STACK_FOLDS, combine, greedy, stack, stackable
from .config import BETA, split_key
from .errors import CompError
from .learner import error
from .predict import check_complete, members, predictions

METHODS = ('average', 'search', 'greedy', 'stack')
FITTED = METHODS[1:]   # the methods that learn from validation predictions


def ensemble(run_names, blend=None, name=None, tta=0, beta=BETA, search_weights=False, workdir='.', method=None,
             rounds=ROUNDS, stack_c=STACK_C, stack_folds=STACK_FOLDS):
    """Combine the runs' probabilities by `method` (average: equal or `blend` weights; search: searched weights;
    greedy: Caruana's selection; stack: a model on their outputs), report validation error, write the submission;
    return its record (`submission`: the path; runs, weights, errors, and what the method chose)."""
    flag = '--search-weights' if search_weights else f'--method {method}'   # as the user asked, for messages
    method = _method(method, search_weights, blend)
    if len(run_names) < 2: raise CompError(f'an ensemble needs at least two runs, {len(run_names)} given: name two or more from `comp runs`')
    w = _weights(blend, len(run_names))
    rs = [runs.find(r, workdir) for r in run_names]
    for r in rs: check_complete(r)
    vocab = rs[0].vocab
    for r in rs[1:]:
        if r.vocab != vocab: raise CompError(f'run {r.name} has a different vocab from {rs[0].name}: it cannot be ensembled')
    comp = competition.find(rs[0].config['data'], workdir)
    if method == 'stack': stackable(comp.task)
    id_col = comp.layout.id_col
    preds = [predictions(r, tta, beta, workdir, comp) for r in rs]
    tests = [t.set_index(id_col)[vocab].sort_index() for t, _ in preds]
    if any(not t.index.equals(tests[0].index) for t in tests):
        raise CompError('the runs predicted different test images: were they trained on different competitions?')
    cfgs = [r.config for r in rs]
    shared = all(split_key(c) == split_key(cfgs[0]) for c in cfgs)
    out = {'runs': [r.name for r in rs], **members(rs), 'method': method, 'metric': comp.metric, 'tta': tta,
           'beta': beta if tta else None, 'shared_split': shared}
    valids = [v.set_index(id_col).sort_index() for _, v in preds]
    blind = [r.name for r, (_, v) in zip(rs, preds) if not len(v)]   # a refit, a --valid-pct 0 run: no validation set
    if blind and method in FITTED:
        raise CompError(f'{flag} needs validation predictions, and {", ".join(blind)} has none (trained on every '
                        'image): ensemble runs with a validation set, or use --method average (--blend 2,1 sets weights)')
    same = shared and not blind and all(v.index.equals(valids[0].index) for v in valids)
    if not same and method in FITTED:
        raise CompError(f'{flag} needs runs that validate on the same images (same --seed, --valid-pct, --folds, --fold; '
                        'CV groups with the same --folds and --seed): retrain them so, or use --method average')
    oof = None
    if same:
        labels = valids[0]['label']
        vp = np.stack([v[vocab].to_numpy() for v in valids])
        err = lambda w: _err(vp, w, labels, vocab, comp)
        out['run_valid_errors'] = [_err(p[None], [1.0], labels, vocab, comp) for p in vp]
        out['equal_weights_error'] = err([1.0] * len(rs))
        if method == 'search': w = search(err, len(rs))
        if method == 'greedy':
            w = greedy(err, len(rs), rounds)
            out.update(rounds=rounds, selection={r.name: c for r, c in zip(rs, w) if c})
        if method == 'stack':   # weights stay equal (what reads only weights sees the plain average); `stack` decides
            out['stack'], oof = stack(vp, labels, vocab, comp.task, stack_c, stack_folds)
    out['weights'] = [float(x) for x in np.asarray(w) / np.sum(w)]
    if same:
        # the stack's error is of predictions by models that never saw the image (inner cross-validation)
        ens = _frame(oof, labels, vocab) if oof is not None else _blend(vp, out['weights'], labels, vocab)
        out['valid_error'] = error(ens, vocab, comp)
        if method == 'search': out['search_gain'] = out['equal_weights_error'] - out['valid_error']
    probs = _with_ids(combine(out, [t.to_numpy() for t in tests]), tests[0].index, vocab)
    params = {}
    if same:   # thresholds chosen on the combined validation predictions
        params = comp.fit_decode(ens, vocab)
        if params: out['decode'] = params
    sub = submission.from_probs(comp, probs, vocab, params)
    default = f'ensemble-{len(rs)}runs-{rs[0].name}'
    out['submission'] = submission.write(comp, sub, name or default, out, workdir, default_name=name is None)
    out['asked_name'] = name or default
    return out


def _method(method, search_weights, blend):
    if search_weights and method not in (None, 'search'):
        raise CompError(f'--search-weights is --method search: give one of --search-weights and --method {method}')
    method = 'search' if search_weights else method or 'average'
    if method not in METHODS: raise CompError(f'--method {method}: use one of {", ".join(METHODS)}')
    if blend is not None and method != 'average':
        raise CompError(f'--blend sets the weights of --method average; --method {method} chooses its own: give one of them')
    return method


def _with_ids(p, index, vocab):
    """Outputs (images x outputs) as a frame with the id column first."""
    import pandas as pd
    return pd.DataFrame(p, columns=vocab, index=index).reset_index()


def _weights(blend, n):
    if blend is None: return [1.0] * n
    try: w = [float(x) for x in (blend.split(',') if isinstance(blend, str) else blend)]
    except ValueError: raise CompError(f'--blend {blend}: give one number per run, e.g. 2,1,1') from None
    if len(w) != n: raise CompError(f'--blend has {len(w)} values for {n} runs: give one per run, e.g. 2,1,1')
    if not all(np.isfinite(w)) or min(w) < 0 or sum(w) <= 0: raise CompError('--blend weights must be non-negative and not all zero')
    return w


def _blend(vp, w, labels, vocab):
    """The validation frame of members' outputs `vp` (members x images x outputs) averaged with weights `w`."""
    return _frame(np.tensordot(np.asarray(w, float) / np.sum(w), vp, axes=1), labels, vocab)


def _frame(p, labels, vocab):
    import pandas as pd
    return pd.DataFrame(p, columns=vocab).assign(label=labels.to_numpy())


def _err(vp, w, labels, vocab, comp):
    return error(_blend(vp, w, labels, vocab), vocab, comp)


def search(err, n, grid=(0, 0.5, 1, 1.5, 2, 3), rounds=3):
    """Non-negative weights for `n` members minimising `err(weights)` (the competition's metric as an error on the
    shared validation set), by coordinate search from equal weights.

    A change is kept only when it lowers the error, so the result is never worse than equal weights."""
    w = [1.0] * n
    best = err(w)
    for _ in range(rounds):
        improved = False
        for i in range(len(w)):
            for g in grid:
                cand = w[:i] + [float(g)] + w[i + 1:]
                if sum(cand) == 0: continue
                e = err(cand)
                if e < best - 1e-12: w, best, improved = cand, e, True
        if not improved: break
    return w
