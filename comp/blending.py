"""Combining ensemble members beyond fixed weights: Caruana's greedy selection and a stacked model, both fitted on
the members' predictions for the same validation images (out-of-fold ones for CV groups).

`vp` is members x images x outputs; `y` the validation labels as strings (a class name, or a number for regression)."""
import warnings

from .errors import CompError

ROUNDS = 25     # AutoGluon's ensemble selection uses 25 (its default ensemble_size) too
STACK_C = 1.0   # inverse regularisation of the stacked logistic regression (sklearn's default); Ridge alpha = 1 / C
STACK_FOLDS = 5
# numpy is imported in the functions: `comp ensemble --help` reads ROUNDS from here


def greedy(err, n, rounds=ROUNDS):
    """Counts per member (Caruana et al. 2004, ensemble selection with replacement): start from the best single
    member, then each round add the member (again, if need be) whose addition lowers `err(counts)` most; the counts
    of the best ensemble seen in any round, so never worse than the best member."""
    import numpy as np
    if rounds < 1: raise CompError(f'--rounds {rounds}: use 1 or more rounds of selection, e.g. 25')
    singles = [err(_one(i, n)) for i in range(n)]
    counts = _one(int(np.argmin(singles)), n)
    best, best_counts = min(singles), list(counts)
    for _ in range(rounds - 1):
        trials = [err(counts[:i] + [counts[i] + 1] + counts[i + 1:]) for i in range(n)]
        i = int(np.argmin(trials))   # the first of equals: the order the members were given breaks ties
        counts[i] += 1
        if trials[i] < best - 1e-12: best, best_counts = trials[i], list(counts)
    return best_counts


def _one(i, n):
    return [1 if j == i else 0 for j in range(n)]


def stackable(task):
    """A CompError unless a stacked model is defined for the task."""
    if task not in ('single', 'regression', 'ordinal'):
        raise CompError(f'--method stack supports single-label, regression and ordinal competitions, not {task}-label '
                        'ones: use --method greedy or --method search')


def stack(vp, y, vocab, task, C=STACK_C, folds=STACK_FOLDS):
    """(the stacked model as a record: fitted on every validation image; its predictions of each validation image by
    a model fitted on the other inner folds, images x outputs). Single-label: a multinomial logistic regression on the
    members' probabilities side by side; regression and ordinal: a ridge regression on the members' values."""
    import numpy as np
    from sklearn.model_selection import KFold, StratifiedKFold
    stackable(task)
    X, t = _features(vp), _targets(y, vocab, task)
    if not 2 <= folds <= len(t):
        raise CompError(f'stacking with {folds} inner folds needs 2 to {len(t)} (the validation images): use 5, say')
    # stratified where a class has enough images for every fold (sklearn warns about the rarer ones, and copes)
    strat = task == 'single' and np.bincount(t).max() >= folds
    split = (StratifiedKFold if strat else KFold)(folds, shuffle=True, random_state=0)
    oof = np.zeros((len(t), vp.shape[2]))
    with warnings.catch_warnings():
        warnings.simplefilter('ignore')
        parts = list(split.split(X, t if strat else None))
    for tr, va in parts:
        oof[va] = apply(_fit(X[tr], t[tr], task, C), X[va], vp.shape[2])
    model = {**_fit(X, t, task, C), 'folds': folds}
    return model, oof


def _features(vp):
    import numpy as np
    return np.concatenate(list(np.asarray(vp, float)), axis=1)   # images x (members * outputs)


def _targets(y, vocab, task):
    import numpy as np
    if task == 'single':
        idx = {v: i for i, v in enumerate(vocab)}
        return np.array([idx[str(v)] for v in y])
    return np.array([float(v) for v in y])


def _fit(X, t, task, C):
    """The fitted model as plain lists (so a submission's JSON record can repeat it)."""
    import numpy as np
    if task != 'single':
        from sklearn.linear_model import Ridge
        m = Ridge(alpha=1 / C).fit(X, t)
        return {'model': 'ridge', 'C': C, 'coef': [m.coef_.tolist()], 'intercept': [float(m.intercept_)]}
    classes = np.unique(t)
    if len(classes) == 1:   # an inner fold that saw one class predicts it
        return {'model': 'logistic', 'C': C, 'classes': classes.tolist(), 'coef': [[0.0] * X.shape[1]], 'intercept': [0.0]}
    from sklearn.linear_model import LogisticRegression
    with warnings.catch_warnings():
        warnings.simplefilter('ignore')   # lbfgs's convergence note on tiny folds; the fit is still usable
        m = LogisticRegression(C=C, max_iter=2000).fit(X, t)
    return {'model': 'logistic', 'C': C, 'classes': m.classes_.tolist(), 'coef': m.coef_.tolist(), 'intercept': m.intercept_.tolist()}


def apply(model, X, n_out):
    """The stacked model's outputs (images x n_out) for features X (images x (members * outputs))."""
    import numpy as np
    X = np.asarray(X, float)
    z = X @ np.asarray(model['coef'], float).T + np.asarray(model['intercept'], float)
    if model['model'] == 'ridge': return z
    classes = model['classes']
    out = np.zeros((len(X), n_out))
    if len(classes) == 1: out[:, classes[0]] = 1.0
    elif len(classes) == 2:   # sklearn's binary form: one row of coefficients, for the second class
        p = 1 / (1 + np.exp(-z[:, 0]))
        out[:, classes[0]], out[:, classes[1]] = 1 - p, p
    else:
        z = np.exp(z - z.max(1, keepdims=True))
        out[:, classes] = z / z.sum(1, keepdims=True)
    return out


def combine_stack(model, probs):
    """The stacked model applied to members' outputs `probs` (one images x outputs array per member)."""
    import numpy as np
    return apply(model, _features(probs), np.asarray(probs[0]).shape[1])


def combine(record, probs):
    """An ensemble's probabilities (images x outputs) from its members' (`probs`, one array each in record['runs']
    order), as its submission record says they were combined: so a Kaggle kernel can repeat it on other images."""
    import numpy as np
    if 'stack' in record: return combine_stack(record['stack'], probs)
    return np.tensordot(np.asarray(record['weights'], float), np.stack([np.asarray(p, float) for p in probs]), axes=1)
