"""Test and validation probabilities of a trained run (with TTA), and their submission."""
import sys

from . import competition, runs, submission
from .errors import CompError
from .files import read_json, write_csv, write_json


def load_learner(run, workdir='.'):
    """The run's learner rebuilt from its config with its trained weights, and its competition."""
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
    import pandas as pd
    ids = comp.test_ids()
    items = pd.DataFrame({comp.layout.id_col: ids, 'path': [f'{comp.layout.test_dir}/{i}' for i in ids]})
    return learn.dls.test_dl(items)


def probs_frame(comp, ids, probs, vocab):
    """Probabilities as a DataFrame: the id column, then one column per label."""
    import pandas as pd
    df = pd.DataFrame(probs[:, :len(vocab)].numpy(), columns=vocab)
    df.insert(0, comp.layout.id_col, list(ids))
    return df


def predict(run, tta=0, beta=0.25, workdir='.', name=None):
    """Write the run's test (and, with TTA, validation) probabilities and a submission; return its path."""
    learn, comp, run = load_learner(run, workdir)
    vocab = read_json(run / 'vocab.json')
    dl = test_dl(learn, comp)
    preds = get_preds(learn, dl, tta, beta)
    probs = probs_frame(comp, comp.test_ids(), preds, vocab)
    suffix = f'_tta{tta}' if tta else ''
    write_csv(run / f'preds_test{suffix}.csv', probs)
    record = {'runs': [run.name], 'weights': [1.0], 'tta': tta, 'beta': beta if tta else None}
    res = read_json(run / 'result.json')
    record['valid_error'] = res.get('valid_error')
    if tta:
        from .train import valid_preds
        valid = valid_preds(learn, comp, vocab)
        tprobs = get_preds(learn, learn.dls.valid.new(shuffle=False, drop_last=False), tta, beta)
        valid[vocab] = tprobs[:, :len(vocab)].numpy()
        write_csv(run / f'preds_valid{suffix}.csv', valid)
        err = float((valid[vocab].to_numpy().argmax(1) != valid['label'].map(vocab.index).to_numpy()).mean())
        res.update(valid_error_tta=err, tta=tta, beta=beta)
        write_json(run / 'result.json', res)
        record['valid_error_tta'] = err
    sub = submission.from_probs(comp, probs, vocab)
    return submission.write(comp, sub, name or f'{run.name}{suffix}', record, workdir)


def get_preds(learn, dl, tta=0, beta=0.25):
    """Probabilities for `dl`; with `tta` > 0, fastai's TTA (n augmented passes lerped with a plain pass)."""
    if not tta:
        preds, _ = learn.get_preds(dl=dl)
        return preds
    from .tta import tta as run_tta
    return run_tta(learn, dl, n=tta, beta=beta)
