"""Ensembles of runs: weighted averages of their probabilities, validated on the shared split."""
import numpy as np

from . import competition, runs, submission
from .config import BETA, split_key
from .errors import CompError
from .learner import error
from .predict import check_complete, members, predictions

def ensemble(run_names, blend=None, name=None, tta=0, beta=BETA, search_weights=False, workdir='.'):
    """Average the runs' probabilities (weighted by `blend`), report validation error, write the submission;
    return its record (`submission`: the path; runs, weights, errors)."""
    if len(run_names) < 2: raise CompError('an ensemble needs at least two runs')
    w = _weights(blend, len(run_names))
    rs = [runs.find(r, workdir) for r in run_names]
    for r in rs: check_complete(r)
    vocab = rs[0].vocab
    for r in rs[1:]:
        if r.vocab != vocab: raise CompError(f'run {r.name} has a different vocab from {rs[0].name}: it cannot be ensembled')
    comp = competition.find(rs[0].config['data'], workdir)
    id_col = comp.layout.id_col
    preds = [predictions(r, tta, beta, workdir, comp) for r in rs]
    tests = [t.set_index(id_col)[vocab].sort_index() for t, _ in preds]
    if any(not t.index.equals(tests[0].index) for t in tests):
        raise CompError('the runs predicted different test images: were they trained on different competitions?')
    cfgs = [r.config for r in rs]
    shared = all(split_key(c) == split_key(cfgs[0]) for c in cfgs)
    out = {'runs': [r.name for r in rs], **members(rs), 'metric': comp.metric, 'tta': tta, 'beta': beta if tta else None, 'shared_split': shared}
    valids = [v.set_index(id_col).sort_index() for _, v in preds]
    blind = [r.name for r, (_, v) in zip(rs, preds) if not len(v)]   # a refit, a --valid-pct 0 run: no validation set
    if blind and search_weights:
        raise CompError(f'--search-weights needs validation predictions, and {", ".join(blind)} has none (trained on '
                        'every image): set the weights with --blend 2,1 say, or ensemble runs with a validation set')
    if shared and not blind and all(v.index.equals(valids[0].index) for v in valids):
        labels = valids[0]['label']
        vp = np.stack([v[vocab].to_numpy() for v in valids])
        err = lambda w: _err(vp, w, labels, vocab, comp)
        out['run_valid_errors'] = [_err(p[None], [1.0], labels, vocab, comp) for p in vp]
        out['equal_weights_error'] = err([1.0] * len(rs))
        if search_weights:
            w = search(err, len(rs))
            out['search_gain'] = out['equal_weights_error'] - err(w)
        out['valid_error'] = err(w)
    elif search_weights:
        raise CompError('--search-weights needs runs that share a validation split (same --seed, --valid-pct, --folds, --fold)')
    out['weights'] = [float(x) for x in np.asarray(w) / np.sum(w)]
    probs = sum(wi * t for wi, t in zip(out['weights'], tests)).reset_index()
    params = {}
    if 'valid_error' in out:   # thresholds chosen on the weighted validation predictions
        params = comp.fit_decode(_blend(vp, out['weights'], labels, vocab), vocab)
        if params: out['decode'] = params
    sub = submission.from_probs(comp, probs, vocab, params)
    default = f'ensemble-{len(rs)}runs-{rs[0].name}'
    out['submission'] = submission.write(comp, sub, name or default, out, workdir, default_name=name is None)
    out['asked_name'] = name or default
    return out


def combine(record, probs):
    """An ensemble's probabilities (images x outputs) from its members' (`probs`, one array each in record['runs']
    order), as its submission record says they were combined: so a Kaggle kernel can repeat it on other images."""
    return np.tensordot(np.asarray(record['weights'], float), np.stack([np.asarray(p, float) for p in probs]), axes=1)


def _weights(blend, n):
    if blend is None: return [1.0] * n
    try: w = [float(x) for x in (blend.split(',') if isinstance(blend, str) else blend)]
    except ValueError: raise CompError(f'--blend {blend}: give one number per run, e.g. 2,1,1') from None
    if len(w) != n: raise CompError(f'--blend has {len(w)} values for {n} runs: give one per run, e.g. 2,1,1')
    if not all(np.isfinite(w)) or min(w) < 0 or sum(w) <= 0: raise CompError('--blend weights must be non-negative and not all zero')
    return w


def _blend(vp, w, labels, vocab):
    """The validation frame of members' outputs `vp` (members x images x outputs) averaged with weights `w`."""
    import pandas as pd
    p = np.tensordot(np.asarray(w, float) / np.sum(w), vp, axes=1)
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
