"""Test and validation probabilities of a trained run (optionally with TTA), and their submission."""
import sys

from . import competition, runs, submission
from .errors import CompError
from .files import read_json, write_csv, write_json


def load_learner(run, workdir='.'):
    """The run's learner rebuilt from its config with its trained weights, its competition and directory."""
    run = runs.find(run, workdir)
    if runs.status(run) != 'complete' or not (run / 'model.pth').exists():
        raise CompError(f'run {run.name} is {runs.status(run)}: finish it with `comp train --resume {run.name}`')
    from .train import build_learner, no_bars
    c = read_json(run / 'config.json')
    comp = competition.find(c['data'], workdir)
    learn = build_learner(c, comp, run, workdir)
    learn.load('model', with_opt=False)
    if not sys.stdout.isatty(): no_bars(learn)
    return learn, comp, run


def test_dl(learn, comp):
    """A DataLoader over the test images in sample_submission's order, through the validation pipeline."""
    from .data import test_items
    return learn.dls.test_dl(test_items(comp))


def preds_paths(run, tta=0):
    """Where a run keeps its (test, validation) probabilities for a TTA setting."""
    suffix = f'_tta{tta}' if tta else ''
    return run / f'preds_test{suffix}.csv', run / f'preds_valid{suffix}.csv'


def predictions(run, tta=0, beta=0.25, workdir='.'):
    """(test, validation) probabilities of a run as DataFrames, computed once per TTA setting and stored."""
    import pandas as pd
    run = runs.find(run, workdir)
    test_f, valid_f = preds_paths(run, tta)
    res = read_json(run / 'result.json') if (run / 'result.json').exists() else {}
    if test_f.exists() and valid_f.exists() and (not tta or res.get('beta') == beta):
        return pd.read_csv(test_f, dtype={'image_id': str}), pd.read_csv(valid_f, dtype={'image_id': str})
    learn, comp, run = load_learner(run, workdir)
    vocab = read_json(run / 'vocab.json')
    preds = get_preds(learn, test_dl(learn, comp), tta, beta)
    test = _frame(comp, comp.test_ids(), preds, vocab)
    write_csv(test_f, test)
    valid = pd.read_csv(run / 'preds_valid.csv', dtype={comp.layout.id_col: str})
    if tta:
        from .train import valid_preds
        valid = valid_preds(learn, comp, vocab)
        tp = get_preds(learn, learn.dls.valid.new(shuffle=False, drop_last=False), tta, beta)
        valid[vocab] = tp[:, :len(vocab)].numpy()
        write_csv(valid_f, valid)
        res.update(valid_error_tta=error(valid, vocab), tta=tta, beta=beta)
        write_json(run / 'result.json', res)
    return test, valid


def predict(run, tta=0, beta=0.25, workdir='.', name=None):
    """Write the run's test probabilities and a validated submission; return the submission's path."""
    run = runs.find(run, workdir)
    test, valid = predictions(run, tta, beta, workdir)
    c = read_json(run / 'config.json')
    comp = competition.find(c['data'], workdir, check_images=False)
    vocab = read_json(run / 'vocab.json')
    res = read_json(run / 'result.json')
    record = {'runs': [run.name], 'weights': [1.0], 'tta': tta, 'beta': beta if tta else None,
              'valid_error': res.get('valid_error'), 'valid_error_tta': res.get('valid_error_tta') if tta else None}
    sub = submission.from_probs(comp, test, vocab)
    return submission.write(comp, sub, name or f'{run.name}{"_tta" + str(tta) if tta else ""}', record, workdir)


def error(valid, vocab):
    """Error rate of a validation-probabilities frame (columns: id, label, one per vocab entry)."""
    return float((valid[vocab].to_numpy().argmax(1) != valid['label'].map(vocab.index).to_numpy()).mean())


def _frame(comp, ids, probs, vocab):
    import pandas as pd
    df = pd.DataFrame(probs[:, :len(vocab)].numpy(), columns=vocab)
    df.insert(0, comp.layout.id_col, list(ids))
    return df


def get_preds(learn, dl, tta=0, beta=0.25):
    """Probabilities for `dl`; with `tta` > 0, fastai's TTA (n augmented passes lerped with a plain pass)."""
    if not tta:
        preds, _ = learn.get_preds(dl=dl)
        return preds
    from .tta import tta as run_tta
    return run_tta(learn, dl, n=tta, beta=beta)
