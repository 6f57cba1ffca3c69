"""Competition metrics (scikit-learn), their direction, decoding outputs to predictions, and the decoding parameters
(a multi-label threshold, ordinal cut points) chosen on validation predictions.

`out` is always an n x len(vocab) array: softmax probabilities ('single'), sigmoid probabilities ('multi'), or the
regressed value in one column ('regression', 'ordinal'). `truth` is a sequence of strings: a class name ('single'),
space-separated names, possibly '' ('multi'), or a number ('regression', 'ordinal')."""
import warnings
from collections import namedtuple

import numpy as np

from .errors import ConfigError, SubmissionError, few

Metric = namedtuple('Metric', 'key title higher')
METRICS = {m.key: m for m in [
    Metric('accuracy', 'accuracy', True),
    Metric('log_loss', 'log loss', False),
    Metric('auc', 'ROC AUC', True),
    Metric('mean_auc', 'mean column-wise ROC AUC', True),
    Metric('f1_micro', 'micro F1', True),
    Metric('f1_macro', 'macro F1', True),
    Metric('qwk', 'quadratic weighted kappa', True),
    Metric('rmse', 'RMSE', False),
]}
PROB_METRICS = {'log_loss', 'auc', 'mean_auc'}   # computed on the outputs; the others on decoded predictions
F1 = {'f1_micro', 'f1_macro'}
# What each metric means for each task; anything else is refused rather than given a number that means nothing.
APPLIES = {
    'single': ['accuracy', 'log_loss', 'auc', 'mean_auc', 'f1_micro', 'f1_macro', 'qwk'],
    'multi': ['accuracy', 'log_loss', 'auc', 'mean_auc', 'f1_micro', 'f1_macro'],
    'ordinal': ['qwk', 'accuracy', 'rmse'],
    'regression': ['rmse', 'qwk'],
}
GRID = np.round(np.arange(0.05, 0.951, 0.05), 2)

# Kaggle's evaluationMetric texts, squashed (lower case, letters and digits only) so case, spaces and hyphens do not matter.
KAGGLE = {
    'categorizationaccuracy': 'accuracy', 'accuracy': 'accuracy', 'classificationaccuracy': 'accuracy',
    'multiclassloss': 'log_loss', 'multiclasslogloss': 'log_loss', 'logloss': 'log_loss', 'binarylogloss': 'log_loss',
    'binarycrossentropy': 'log_loss', 'crossentropy': 'log_loss',
    'areaunderreceiveroperatingcharacteristiccurve': 'auc', 'auc': 'auc', 'rocauc': 'auc', 'aucroc': 'auc',
    'meancolumnwiseareaunderreceiveroperatingcharacteristiccurve': 'mean_auc', 'meancolumnwiseauc': 'mean_auc',
    'meancolumnwiserocauc': 'mean_auc', 'meanauc': 'mean_auc',
    'microf1': 'f1_micro', 'meanf1score': 'f1_micro', 'f1score': 'f1_micro', 'f1': 'f1_micro', 'microf1score': 'f1_micro',
    'f1micro': 'f1_micro', 'macrof1': 'f1_macro', 'macrof1score': 'f1_macro', 'f1macro': 'f1_macro',
    'quadraticweightedkappa': 'qwk', 'qwk': 'qwk', 'cohenskappaquadratic': 'qwk',
    'rootmeansquarederror': 'rmse', 'rootmeansquareerror': 'rmse', 'rmse': 'rmse',
}


def check(key):
    """`key` if it names a metric, else a ConfigError listing the known ones."""
    if key in METRICS: return key
    raise ConfigError(f'--metric {key} is not a metric comp knows: use one of {", ".join(METRICS)}')


def higher(key):
    """Whether a higher score is better for metric `key`."""
    return METRICS[check(key)].higher


def to_error(key, score):
    """The score as an error, lower is better: 1 - score where higher is better, else the score."""
    return 1.0 - float(score) if higher(key) else float(score)


def from_kaggle(text):
    """The metric key for Kaggle's evaluationMetric text, or None when comp does not know it."""
    if not isinstance(text, str): return None
    return KAGGLE.get(''.join(c for c in text.lower() if c.isalnum()))


def default_for(task, submission):
    """A sensible metric for a task and submission format when the competition names none."""
    if task == 'ordinal': return 'qwk'
    if task == 'regression': return 'rmse'
    if task == 'multi': return 'mean_auc' if submission in ('probs', 'prob') else 'f1_micro'
    return 'log_loss' if submission in ('probs', 'prob') else 'accuracy'


def _applies(key, task):
    check(key)
    if task not in APPLIES: raise ConfigError(f'unknown task {task!r}: use one of {", ".join(APPLIES)}')
    if key not in APPLIES[task]:
        raise ConfigError(f'the {METRICS[key].title} metric does not apply to a {task} task: use one of {", ".join(APPLIES[task])}')


def _2d(out):
    out = np.asarray(out, dtype=float)
    return out[:, None] if out.ndim == 1 else out


def _ordinal_cuts(params, range):
    """(lowest grade, cut points): the fitted ones, else the rounding cut points of `range`."""
    cuts = (params or {}).get('thresholds')
    if cuts is not None:
        lo = int(range[0]) if range else 0
        return lo, np.sort(np.asarray(cuts, dtype=float))
    if range: return int(range[0]), np.arange(int(range[0]), int(range[1])) + 0.5
    return None, None


def decode(task, vocab, out, params=None, range=None):
    """One prediction per row of `out`: a class name, space-separated names, a number, or an int grade."""
    out = _2d(out)
    if task == 'single': return [vocab[i] for i in out.argmax(1)]
    if task == 'multi':
        t = (params or {}).get('threshold', 0.5)
        keep = out >= t
        keep[np.arange(len(out)), out.argmax(1)] |= ~keep.any(1)   # a row is never empty: its top class
        return [' '.join(sorted(vocab[j] for j in np.flatnonzero(r))) for r in keep]
    v = out[:, 0]
    if task == 'regression':
        if range: v = np.clip(v, range[0], range[1])
        return [float(x) for x in v]
    if task == 'ordinal':
        lo, cuts = _ordinal_cuts(params, range)
        if cuts is None: return [int(x) for x in np.floor(v + 0.5)]   # no grades known: plain rounding (half up)
        g = lo + np.searchsorted(cuts, v, side='right')
        hi = int(range[1]) if range else lo + len(cuts)
        return [int(x) for x in np.clip(g, lo, hi)]
    raise ConfigError(f'unknown task {task!r}: use one of {", ".join(APPLIES)}')


def _onehot(truth, vocab):
    idx = {c: i for i, c in enumerate(vocab)}
    Y = np.zeros((len(truth), len(vocab)), dtype=int)
    for r, t in enumerate(truth):
        for c in str(t).split():
            if c in idx: Y[r, idx[c]] = 1
    return Y


def _col_aucs(Y, P):
    """Per-column ROC AUCs, skipping columns where the truth has one class (AUC is undefined there)."""
    from sklearn.metrics import roc_auc_score
    return [roc_auc_score(Y[:, j], P[:, j]) for j in range(Y.shape[1]) if 0 < Y[:, j].sum() < len(Y)]


def _prob_metric(key, task, vocab, Y, P, positive=None):
    """log_loss / auc / mean_auc of probabilities P against the one-hot (or multi-hot) truth Y."""
    from sklearn.metrics import log_loss, roc_auc_score
    if key == 'log_loss':
        if task == 'multi':
            return float(np.mean([log_loss(Y[:, j], P[:, j], labels=[0, 1]) for j in range(Y.shape[1])]))
        # Kaggle rescales each row to sum to one before scoring; sklearn no longer does.
        return float(log_loss(Y, P / P.sum(1, keepdims=True)))
    if key == 'auc' and (positive is not None or len(vocab) <= 2 or task == 'multi'):
        j = list(vocab).index(str(positive) if positive is not None else vocab[-1])
        y = Y[:, j]
        return float(roc_auc_score(y, P[:, j])) if 0 < y.sum() < len(y) else float('nan')
    # mean_auc; and auc over >2 classes, whose one-vs-rest macro average is this mean (here also without every class).
    aucs = _col_aucs(Y, P)
    return float(np.mean(aucs)) if aucs else float('nan')


def _num(xs, what='values'):
    try: return np.array([float(x) for x in xs])
    except (TypeError, ValueError):
        bad = next(x for x in xs if not _isnum(x))
        raise SubmissionError(f'{bad!r} is not a number ({what} must be numbers)') from None


def _isnum(x):
    try: float(x); return True
    except (TypeError, ValueError): return False


def _ints(xs, what='grades'):
    v = _num(xs, what)
    if not np.all(v == np.round(v)):   # NaN fails here too
        bad = next(x for x, f in zip(xs, v) if f != np.round(f))
        raise SubmissionError(f'{bad!r} is not a whole number ({what} must be integers)')
    return v.astype(int)


def _label_metric(key, task, truth, pred, classes):
    """accuracy / f1 / qwk / rmse of decoded predictions against truth; `classes` binarise multi-label sets for F1."""
    from sklearn.metrics import cohen_kappa_score, f1_score
    from sklearn.preprocessing import MultiLabelBinarizer
    text = lambda xs: ['' if x is None or x != x else str(x).strip() for x in xs]   # NaN (an empty cell) is ''
    truth, pred = text(truth), text(pred)
    if key == 'accuracy':
        if task == 'multi': return float(np.mean([set(t.split()) == set(p.split()) for t, p in zip(truth, pred)]))
        if task == 'ordinal': return float(np.mean(_ints(truth) == _ints(pred)))
        # Codes may be written '4' or '4.0': compare numbers when both sides are numbers.
        if all(map(_isnum, truth + pred)): return float(np.mean(_num(truth) == _num(pred)))
        return float(np.mean([t == p for t, p in zip(truth, pred)]))
    if key in F1:
        mlb = MultiLabelBinarizer(classes=list(classes))
        with warnings.catch_warnings():   # labels outside `classes` are ignored, as MLE-bench's grader does
            warnings.simplefilter('ignore')
            T, P = mlb.fit_transform([t.split() for t in truth]), mlb.transform([p.split() for p in pred])
        return float(f1_score(T, P, average=key[3:], zero_division=0))
    if key == 'qwk':
        if task == 'regression': t, p = np.round(_num(truth)).astype(int), np.round(_num(pred)).astype(int)
        elif task == 'single' and not all(map(_isnum, classes)):
            idx = {c: i for i, c in enumerate(classes)}   # class names: grades in vocab order
            unknown = sorted(set(truth + pred) - set(idx))
            if unknown: raise SubmissionError(f'unknown labels: {", ".join(unknown[:5])}')
            t, p = [idx[x] for x in truth], [idx[x] for x in pred]
        else: t, p = _ints(truth), _ints(pred)
        # sklearn weights by position in the sorted labels, so ints (never floats) keep grades one step apart.
        return float(cohen_kappa_score(t, p, weights='quadratic'))
    if key == 'rmse': return float(np.sqrt(np.mean((_num(truth) - _num(pred)) ** 2)))
    raise ConfigError(f'{key} is computed on probabilities, not on predicted labels')


def score(key, task, vocab, truth, out, params=None, positive=None, range=None):
    """The metric `key` of outputs `out` against `truth`."""
    _applies(key, task)
    out, vocab, truth = _2d(out), list(vocab), list(truth)
    if key in PROB_METRICS: return _prob_metric(key, task, vocab, _onehot(truth, vocab), out, positive)
    return _label_metric(key, task, truth, decode(task, vocab, out, params, range), vocab)


def fit(key, task, vocab, truth, out, positive=None, range=None):
    """Decoding parameters chosen on validation (or out-of-fold) outputs to get the best metric; {} when none apply.

    `range`: [lowest, highest] grade for 'ordinal' (default: the lowest and highest in `truth`)."""
    _applies(key, task)
    err = lambda p, r=None: to_error(key, score(key, task, vocab, truth, out, p, positive, r))
    if task == 'multi' and key in F1 | {'accuracy'}:
        # Best score; among equal scores the threshold nearest 0.5.
        best = min(GRID, key=lambda t: (err({'threshold': float(t)}), abs(t - 0.5)))
        return {'threshold': float(best)}
    if task == 'ordinal':
        g = _ints(truth)
        lo, hi = (int(range[0]), int(range[1])) if range else (int(g.min()), int(g.max()))
        if hi <= lo: return {}
        cuts = list(np.arange(lo, hi) + 0.5)   # rounding: every change must beat it
        v = _2d(out)[:, 0]
        cands = np.unique(np.concatenate([np.quantile(v, np.linspace(0, 1, 101)), cuts]))
        if key == 'qwk':   # the search scores thousands of cut points: kappa in numpy, as scikit-learn computes it
            err = lambda p, r: 1 - qwk(g, np.clip(np.searchsorted(p['thresholds'], v) + lo, lo, hi))
        best = err({'thresholds': cuts}, [lo, hi])
        for _ in np.arange(10):
            changed = False
            for k in np.arange(len(cuts)):
                below = cuts[k - 1] if k else -np.inf
                above = cuts[k + 1] if k + 1 < len(cuts) else np.inf
                for c in cands[(cands > below) & (cands < above)]:
                    e = err({'thresholds': cuts[:k] + [float(c)] + cuts[k + 1:]}, [lo, hi])
                    if e < best: best, cuts[k], changed = e, float(c), True
            if not changed: break
        return {'thresholds': [float(c) for c in cuts]}
    return {}


def qwk(a, b):
    """Quadratic weighted kappa of two integer arrays, as scikit-learn's cohen_kappa_score(weights='quadratic')
    computes it (weights by the index of each value among those that occur), in numpy."""
    labels, idx = np.unique(np.concatenate([a, b]), return_inverse=True)
    n, k = len(a), len(labels)
    cm = np.bincount(idx[:n] * k + idx[n:], minlength=k * k).reshape(k, k).astype(float)
    w = (np.arange(k)[:, None] - np.arange(k)[None, :]) ** 2
    expected = np.outer(cm.sum(1), cm.sum(0)) / cm.sum()
    den = (w * expected).sum()
    return 1.0 - (w * cm).sum() / den if den else (1.0 if (w * cm).sum() == 0 else 0.0)


def score_frames(key, kind, solution, sub, id_col, positive=None):
    """The metric of a submission frame against the solution frame (both in the submission's format), matched by id."""
    check(key)
    for name, df in (('solution', solution), ('submission', sub)):
        if id_col not in df.columns: raise SubmissionError(f'the {name} has no {id_col} column')
    sol_ids, sub_ids = solution[id_col].astype(str).str.strip(), sub[id_col].astype(str).str.strip()
    rep = sorted(set(sub_ids[sub_ids.duplicated()]))
    if rep: raise SubmissionError(f'{len(rep)} ids appear more than once in the submission: {few(rep)}')
    missing, extra = sorted(set(sol_ids) - set(sub_ids)), sorted(set(sub_ids) - set(sol_ids))
    if missing or extra:
        raise SubmissionError('the submission\'s ids are not the solution\'s: ' + '; '.join(
            [f'{len(missing)} missing ({few(missing)})'] * bool(missing) + [f'{len(extra)} not in the solution ({few(extra)})'] * bool(extra)))
    cols = [c for c in solution.columns if c != id_col]
    lost = [c for c in cols if c not in sub.columns]
    if lost: raise SubmissionError(f'the submission has no {", ".join(map(str, lost))} column')
    # Rows in the solution's order, found by id (never by position); columns the submission adds are dropped.
    S = solution.set_axis(sol_ids, axis=0)[cols]
    U = sub.set_axis(sub_ids, axis=0).loc[S.index, cols]
    if kind in ('prob', 'probs'):
        P = _num(U.to_numpy().ravel(), 'probabilities').reshape(len(U), len(cols))
        if np.isnan(P).any(): raise SubmissionError('the submission has empty probabilities')
        if P.size and (P.min() < 0 or P.max() > 1): raise SubmissionError('probabilities must lie between 0 and 1')
        if kind == 'prob':
            s = S[cols[0]].astype(str).str.strip()
            if positive is not None and not s.isin(['0', '1', '0.0', '1.0']).all(): y = (s == str(positive)).to_numpy()
            else: y = _num(s, 'answers') == 1
            return score(key, 'single', ['0', '1'], np.where(y, '1', '0'), np.column_stack([1 - P[:, 0], P[:, 0]]), positive='1')
        Y = _num(S.to_numpy().ravel(), 'answers').reshape(P.shape) == 1
        task = 'single' if (Y.sum(1) == 1).all() else 'multi'
        truth = [' '.join(str(c) for c, y in zip(cols, r) if y) for r in Y]
        return score(key, task, [str(c) for c in cols], truth, P, positive=positive)
    task = {'label': 'single', 'labels': 'multi', 'grade': 'ordinal', 'number': 'regression'}.get(kind)
    if task is None: raise ConfigError(f'unknown submission format {kind!r}: use one of label, labels, grade, number, prob, probs')
    _applies(key, task)
    if key in PROB_METRICS: raise ConfigError(f'{METRICS[key].title} needs probabilities; a {kind} submission holds none')
    truth, pred = S[cols[0]].tolist(), U[cols[0]].tolist()
    # F1's classes: those in the solution (predicted labels outside them are ignored), as MLE-bench grades.
    classes = sorted({c for t in truth if isinstance(t, str) for c in t.split()})
    return _label_metric(key, task, truth, pred, classes)
