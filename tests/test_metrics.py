"""Metrics: each against scikit-learn computed here, direction, Kaggle names, thresholds and cut points chosen on
validation, decoding, submissions scored by id."""
import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import accuracy_score, cohen_kappa_score, f1_score, log_loss, roc_auc_score
from sklearn.preprocessing import MultiLabelBinarizer

from comp import metrics
from comp.errors import ConfigError, SubmissionError

rng = np.random.default_rng(0)


def probs(n, k):
    p = rng.random((n, k)) ** 3
    return p / p.sum(1, keepdims=True)


def test_check_direction_and_error():
    assert list(metrics.METRICS) == ['accuracy', 'log_loss', 'auc', 'mean_auc', 'f1_micro', 'f1_macro', 'qwk', 'rmse']
    assert [k for k in metrics.METRICS if not metrics.higher(k)] == ['log_loss', 'rmse']
    assert metrics.check('qwk') == 'qwk'
    assert metrics.to_error('accuracy', 0.75) == 0.25 and metrics.to_error('log_loss', 0.3) == 0.3
    with pytest.raises(ConfigError, match='--metric foo is not a metric comp knows: use one of accuracy, log_loss'):
        metrics.check('foo')
    for f in (lambda: metrics.higher('foo'), lambda: metrics.score('f1', 'single', ['a', 'b'], ['a'], [[1, 0]])):
        with pytest.raises(ConfigError, match='foo|f1 is not a metric'): f()


def test_metric_that_does_not_apply_to_the_task():
    with pytest.raises(ConfigError, match='log loss metric does not apply to a regression task'):
        metrics.score('log_loss', 'regression', ['value'], ['1.0'], [[1.0]])


@pytest.mark.parametrize('text, key', [
    ('Categorization Accuracy', 'accuracy'), ('Multiclass Loss', 'log_loss'), ('Multi Class Log Loss', 'log_loss'),
    ('Log Loss', 'log_loss'), ('LogLoss', 'log_loss'), ('log-loss', 'log_loss'),
    ('Area Under Receiver Operating Characteristic Curve', 'auc'), ('AUC', 'auc'),
    ('Mean Columnwise Area Under Receiver Operating Characteristic Curve', 'mean_auc'),
    ('Micro-F1', 'f1_micro'), ('Mean F1-Score', 'f1_micro'), ('F1 Score', 'f1_micro'), ('Macro F1', 'f1_macro'),
    ('Quadratic Weighted Kappa', 'qwk'), ('  quadratic  weighted KAPPA ', 'qwk'),
    ('Root Mean Squared Error', 'rmse'), ('RMSE', 'rmse'),
    ('Mean Average Precision', None), ('Dice Coefficient', None), ('', None), (None, None)])
def test_from_kaggle(text, key):
    assert metrics.from_kaggle(text) == key


def test_default_for():
    got = [metrics.default_for(t, s) for t, s in [('single', 'label'), ('single', 'probs'), ('single', 'prob'),
           ('multi', 'labels'), ('multi', 'probs'), ('ordinal', 'grade'), ('regression', 'number')]]
    assert got == ['accuracy', 'log_loss', 'log_loss', 'f1_micro', 'mean_auc', 'qwk', 'rmse']
    assert all(k in metrics.METRICS for k in got)


def test_single_label_metrics_match_sklearn():
    vocab = ['0', '1', '2', '3', '4']
    P = probs(80, 5)
    truth = [vocab[i] for i in rng.integers(0, 5, 80)]
    pred = [vocab[i] for i in P.argmax(1)]
    s = lambda k: metrics.score(k, 'single', vocab, truth, P)
    assert s('accuracy') == pytest.approx(accuracy_score(truth, pred))
    assert s('log_loss') == pytest.approx(log_loss(truth, P, labels=vocab))
    assert s('auc') == pytest.approx(roc_auc_score(truth, P, multi_class='ovr', average='macro', labels=vocab))
    assert s('mean_auc') == pytest.approx(np.mean([roc_auc_score(np.array(truth) == c, P[:, j]) for j, c in enumerate(vocab)]))
    assert s('f1_micro') == pytest.approx(f1_score(truth, pred, average='micro'))
    assert s('f1_macro') == pytest.approx(f1_score(truth, pred, average='macro', labels=vocab, zero_division=0))
    assert s('qwk') == pytest.approx(cohen_kappa_score(list(map(int, truth)), list(map(int, pred)), weights='quadratic'))
    # Kaggle rescales rows before log loss: unnormalised outputs score as their normalised selves.
    assert metrics.score('log_loss', 'single', vocab, truth, P * 3) == pytest.approx(s('log_loss'))


def test_binary_metrics_match_sklearn():
    vocab = ['cat', 'dog']
    P = probs(50, 2)
    truth = list(np.where(rng.random(50) < P[:, 1], 'dog', 'cat'))
    y = np.array(truth) == 'dog'
    assert metrics.score('auc', 'single', vocab, truth, P) == pytest.approx(roc_auc_score(y, P[:, 1]))
    assert metrics.score('auc', 'single', vocab, truth, P, positive='cat') == pytest.approx(roc_auc_score(~y, P[:, 0]))
    assert metrics.score('log_loss', 'single', vocab, truth, P) == pytest.approx(log_loss(y, P[:, 1]))


def test_multi_label_metrics_match_sklearn():
    vocab = ['a', 'b', 'c', 'd']
    P = rng.random((60, 4))
    Y = rng.random((60, 4)) < 0.4
    truth = [' '.join(c for c, y in zip(vocab, r) if y) for r in Y]   # some rows are ''
    D = P >= 0.5
    D[np.arange(60), P.argmax(1)] |= ~D.any(1)   # a row is never empty
    s = lambda k, **kw: metrics.score(k, 'multi', vocab, truth, P, **kw)
    assert s('f1_micro') == pytest.approx(f1_score(Y, D, average='micro'))
    assert s('f1_macro') == pytest.approx(f1_score(Y, D, average='macro'))
    assert s('accuracy') == pytest.approx(np.mean((Y == D).all(1)))
    assert s('log_loss') == pytest.approx(np.mean([log_loss(Y[:, j], P[:, j]) for j in range(4)]))
    assert s('mean_auc') == pytest.approx(np.mean([roc_auc_score(Y[:, j], P[:, j]) for j in range(4)]))
    assert s('auc', positive='b') == pytest.approx(roc_auc_score(Y[:, 1], P[:, 1]))
    # A column with one class in the truth has no AUC: it is left out of the mean.
    Y[:, 0] = False
    truth = [' '.join(c for c, y in zip(vocab, r) if y) for r in Y]
    assert metrics.score('mean_auc', 'multi', vocab, truth, P) == pytest.approx(
        np.mean([roc_auc_score(Y[:, j], P[:, j]) for j in range(1, 4)]))


def test_regression_and_ordinal_metrics_match_sklearn():
    y = rng.integers(1, 101, 40)
    v = y + rng.normal(0, 15, 40)
    truth = [f'{x}.0' for x in y]
    clipped = np.clip(v, 1, 100)
    assert metrics.score('rmse', 'regression', ['value'], truth, v[:, None], range=[1, 100]) == pytest.approx(
        np.sqrt(np.mean((clipped - y) ** 2)))
    g = rng.integers(0, 5, 40)
    v = g + rng.normal(0, 0.8, 40)
    grades = np.clip(np.floor(v + 0.5), 0, 4).astype(int)
    s = lambda k: metrics.score(k, 'ordinal', ['value'], list(map(str, g)), v[:, None], range=[0, 4])
    assert s('qwk') == pytest.approx(cohen_kappa_score(g, grades, weights='quadratic'))
    assert s('accuracy') == pytest.approx(accuracy_score(g, grades))
    assert s('rmse') == pytest.approx(np.sqrt(np.mean((grades - g) ** 2)))


def test_fit_multi_threshold_beats_half_when_positives_sit_near_0_3():
    vocab = ['a', 'b', 'c', 'd']
    Y = rng.random((100, 4)) < 0.5
    Y[:, 0] |= ~Y.any(1)   # a row without labels would still predict its top one
    P = np.where(Y, rng.uniform(0.25, 0.35, Y.shape), rng.uniform(0, 0.2, Y.shape))
    truth = [' '.join(c for c, y in zip(vocab, r) if y) for r in Y]
    params = metrics.fit('f1_micro', 'multi', vocab, truth, P)
    assert params['threshold'] < 0.5
    f1 = lambda p: metrics.score('f1_micro', 'multi', vocab, truth, P, p)
    assert f1(params) > f1({'threshold': 0.5}) and f1(params) == 1.0
    # Every threshold between the classes is perfect: the tie goes to the one nearest 0.5.
    assert metrics.fit('f1_macro', 'multi', vocab, truth, np.where(Y, 0.9, 0.1)) == {'threshold': 0.5}
    assert metrics.fit('log_loss', 'multi', vocab, truth, P) == {}
    assert metrics.fit('accuracy', 'single', vocab, [t.split()[0] if t else 'a' for t in truth], P) == {}


def test_fit_ordinal_cut_points():
    g = rng.integers(0, 5, 400)
    truth = list(map(str, g))
    qwk = lambda v, p=None: metrics.score('qwk', 'ordinal', ['value'], truth, v[:, None], p, range=[0, 4])
    # Shrunk toward the mean: rounding puts almost everything in the middle grades.
    shrunk = 2 + 0.4 * (g - 2) + rng.normal(0, 0.15, 400)
    params = metrics.fit('qwk', 'ordinal', ['value'], truth, shrunk[:, None])
    assert len(params['thresholds']) == 4 and params['thresholds'] == sorted(params['thresholds'])
    assert qwk(shrunk, params) > qwk(shrunk) + 0.05
    # Unbiased noise: never worse than rounding.
    noisy = g + rng.normal(0, 0.7, 400)
    assert qwk(noisy, metrics.fit('qwk', 'ordinal', ['value'], truth, noisy[:, None])) >= qwk(noisy)
    # Lower-is-better metrics are minimised.
    rmse = lambda p=None: metrics.score('rmse', 'ordinal', ['value'], truth, shrunk[:, None], p, range=[0, 4])
    assert rmse(metrics.fit('rmse', 'ordinal', ['value'], truth, shrunk[:, None])) < rmse()


def test_decode():
    vocab = ['b', 'a', 'c']
    P = rng.random((200, 3)) * 0.3
    for t in (0.5, 0.95):
        rows = metrics.decode('multi', vocab, P, {'threshold': t})
        assert all(rows) and rows == [vocab[i] for i in P.argmax(1)]
    assert metrics.decode('multi', vocab, [[0.6, 0.7, 0.1]]) == ['a b']   # sorted names
    assert metrics.decode('single', vocab, [[0.2, 0.5, 0.3]]) == ['a']
    assert metrics.decode('regression', ['value'], [[-5.0], [50.5], [200]], range=[1, 100]) == [1.0, 50.5, 100.0]
    v = [[-3], [0.49], [0.5], [2.6], [9]]
    assert metrics.decode('ordinal', ['value'], v, range=[0, 4]) == [0, 0, 1, 3, 4]
    assert metrics.decode('ordinal', ['value'], v, range=[1, 5]) == [1, 1, 1, 3, 5]
    assert metrics.decode('ordinal', ['value'], v, {'thresholds': [0.4, 1, 2, 3]}) == [0, 1, 1, 3, 4]


def sol_sub(kind, n=30):
    """A solution frame and a prediction in the submission format `kind`, with the predicted values as arrays."""
    ids = [f'{i:03d}.jpg' for i in range(n)]
    if kind == 'probs':
        P = probs(n, 3)
        truth = np.array(['x', 'y', 'z'])[rng.integers(0, 3, n)]
        sol = pd.DataFrame({'id': ids, **{c: (truth == c).astype(int).astype(str) for c in 'xyz'}})
        return sol, pd.DataFrame({'id': ids, **{c: P[:, j].astype(str) for j, c in enumerate('xyz')}}), truth, P
    if kind == 'prob':
        p, y = rng.random(n), rng.integers(0, 2, n)
        return pd.DataFrame({'id': ids, 'label': y.astype(str)}), pd.DataFrame({'id': ids, 'label': p.astype(str)}), y, p
    if kind == 'labels':
        t = [' '.join(sorted(set(rng.choice(list('pqr'), rng.integers(1, 3))))) for _ in range(n)]
        p = [' '.join(sorted(set(rng.choice(list('pqrs'), rng.integers(1, 3))))) for _ in range(n)]   # 's' is not in the answers
        return pd.DataFrame({'id': ids, 'labels': t}), pd.DataFrame({'id': ids, 'labels': p}), t, p
    t, p = (rng.integers(1, 101, n), rng.uniform(1, 100, n)) if kind == 'number' else (rng.integers(0, 5, n), rng.integers(0, 5, n))
    return pd.DataFrame({'id': ids, 'v': t.astype(str)}), pd.DataFrame({'id': ids, 'v': p.astype(str)}), t, p


@pytest.mark.parametrize('key, kind, expected', [
    ('accuracy', 'label', lambda t, p: accuracy_score(t, p)),
    ('qwk', 'grade', lambda t, p: cohen_kappa_score(t, p, weights='quadratic')),
    ('rmse', 'number', lambda t, p: np.sqrt(np.mean((t - p) ** 2))),
    ('log_loss', 'probs', lambda t, P: log_loss(t, P, labels=['x', 'y', 'z'])),
    ('mean_auc', 'probs', lambda t, P: np.mean([roc_auc_score(t == c, P[:, j]) for j, c in enumerate('xyz')])),
    ('auc', 'prob', lambda y, p: roc_auc_score(y, p)),
    ('log_loss', 'prob', lambda y, p: log_loss(y, p)),
    ('f1_micro', 'labels', lambda t, p: f1_score(*(lambda m: (m.fit_transform([x.split() for x in t]),
                                                              m.transform([x.split() for x in p])))(MultiLabelBinarizer(classes=['p', 'q', 'r'])),
                                                 average='micro')),
])
def test_score_frames_by_id(key, kind, expected):
    sol, sub, t, p = sol_sub('grade' if kind == 'label' else kind)
    want = expected(t, p)
    shuffled = sub.sample(frac=1, random_state=1)
    assert list(shuffled['id']) != list(sub['id'])
    assert metrics.score_frames(key, kind, sol, shuffled, 'id') == pytest.approx(want)
    # Extra submission columns are dropped.
    assert metrics.score_frames(key, kind, sol, shuffled.assign(extra='1'), 'id') == pytest.approx(want)


def test_score_frames_positive_class_name():
    sol, sub, y, p = sol_sub('prob')
    sol = sol.assign(label=np.where(y == 1, 'dog', 'cat'))
    assert metrics.score_frames('auc', 'prob', sol, sub, 'id', positive='dog') == pytest.approx(roc_auc_score(y, p))


@pytest.mark.parametrize('breaks, msg', [
    (lambda d: d.iloc[1:], "ids are not the solution's: 1 missing \\(000.jpg\\)"),
    (lambda d: pd.concat([d, d.iloc[:1]]), '1 ids appear more than once in the submission: 000.jpg'),
    (lambda d: d.assign(id=['zzz'] + list(d['id'][1:])), '1 missing \\(000.jpg\\); 1 not in the solution \\(zzz\\)'),
    (lambda d: d.rename(columns={'v': 'w'}), 'the submission has no v column'),
    (lambda d: d.assign(v=['2.5'] + list(d['v'][1:])), "'2.5' is not a whole number"),
])
def test_score_frames_refuses(breaks, msg):
    sol, sub, _, _ = sol_sub('grade')
    with pytest.raises(SubmissionError, match=msg):
        metrics.score_frames('qwk', 'grade', sol, breaks(sub), 'id')


def test_score_frames_refuses_probability_metric_of_labels():
    sol, sub, _, _ = sol_sub('grade')
    with pytest.raises(ConfigError, match='log loss'):
        metrics.score_frames('log_loss', 'label', sol, sub, 'id')


def test_numpy_kappa_is_scikit_learns():
    rng = np.random.default_rng(3)
    for n in (5, 40, 300):
        a = rng.integers(0, 5, n)
        b = np.clip(a + rng.integers(-2, 3, n), 0, 4)
        b[:2] = 7   # a value outside the other's: scikit-learn weights by index among the values that occur
        assert metrics.qwk(a, b) == pytest.approx(cohen_kappa_score(a, b, weights='quadratic'), abs=1e-12)
