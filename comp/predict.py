"""Test and validation probabilities of a trained run (optionally with TTA), and their submission."""
import sys

from . import competition, runs, submission
from .errors import CompError
from .learner import build_learner, error, no_bars, valid_preds
from .config import BETA
from .data import no_validation


def load_learner(run, workdir='.', comp=None):
    """(learner, competition, Run): the run's learner rebuilt from its config with its trained weights."""
    run = runs.find(run, workdir)
    check_complete(run)
    comp = comp or competition.find(run.config['data'], workdir)
    c = run.config
    if c.get('images'):
        from .resize import stale
        old = stale(comp, c['images'])
        if old:
            # The run read the copy, but a copy that no longer matches its sources would predict old pixels.
            print(f'not using the pre-resized copy {c["images"]}: {len(old)} images changed since it was made; '
                  'predicting from the originals', flush=True)
            c = {**c, 'images': None}
    learn = build_learner(c, comp, run, workdir)
    learn.load(runs.MODEL, with_opt=False)
    if not sys.stdout.isatty(): no_bars(learn)
    return learn, comp, run


def check_complete(run):
    """A CompError saying what to do unless `run` finished and has what prediction reads."""
    st = run.status
    group = run.config.get('kind') == 'cv'
    what, resume = (f'CV group {run.name}', f'comp cv --resume {run.name}') if group else (f'run {run.name}', f'comp train --resume {run.name}')
    if st == 'running':
        raise CompError(f'{what} is still training: wait for it to finish')
    if st == 'failed':
        why = run.status_record().get('error')
        raise CompError(f'{what} failed{f" ({why})" if why else ""}: train anew, or `{resume}` if the cause is fixed')
    if st != 'complete' or None in run.members:
        raise CompError(f'{what} is {"incomplete" if st == "complete" else st}: finish it with `{resume}`')
    for m in run.parts: check_complete(m)  # a CV group predicts with its folds' models (and refit)
    missing = [f.name for f in ([run.vocab_file] if run.members else [run.model_file, run.vocab_file]) if not f.exists()]
    if missing:
        raise CompError(f'run {run.name} finished but its {" and ".join(missing)} is missing: restore it from a backup, '
                        'or train a new run with the same options')


def members(rs):
    """{'members': {group: [its fold runs and refit]}} for the CV groups among runs `rs` ({} when none is one): a
    submission's record names the runs that made it, which a group's later refit does not change."""
    groups = {r.name: [p.name for p in r.parts] for r in rs if r.members}
    return {'members': groups} if groups else {}


def test_dl(learn, comp):
    """A DataLoader over the test images in sample_submission's order, through the validation pipeline."""
    from .data import test_items
    return learn.dls.test_dl(test_items(comp))


def predictions(run, tta=0, beta=BETA, workdir='.', comp=None):
    """(test, validation) probabilities of a run as DataFrames, computed once per TTA setting and stored in the run."""
    run = runs.find(run, workdir)
    comp = comp or competition.find(run.config['data'], workdir)
    _check_tta(tta, beta)
    if run.members: return _group_predictions(run, tta, beta, workdir, comp)
    id_col = comp.layout.id_col
    if no_validation(run.config) and tta and run.has_preds('test', tta, beta):
        return run.read_preds('test', tta, id_col, beta), run.read_preds('valid', 0, id_col)
    if run.has_preds('test', tta, beta) and run.has_preds('valid', tta, beta):
        test, valid = run.read_preds('test', tta, id_col, beta), run.read_preds('valid', tta, id_col, beta)
        if tta: run.record_tta_error(tta, beta, error(valid, run.vocab, comp))
        return test, valid
    learn, comp, run = load_learner(run, workdir, comp)
    vocab = run.vocab
    test = _frame(comp, comp.test_ids(), get_preds(learn, test_dl(learn, comp), tta, beta), vocab)
    run.write_preds('test', test, tta, beta)
    if not tta or no_validation(run.config): return test, run.read_preds('valid', 0, id_col)  # none to augment
    probs = get_preds(learn, learn.dls.valid.new(shuffle=False, drop_last=False), tta, beta)
    valid = valid_preds(learn, comp, vocab, probs=probs)
    run.write_preds('valid', valid, tta, beta)
    run.record_tta_error(tta, beta, error(valid, vocab, comp))
    return test, valid


def _check_tta(tta, beta):
    if tta < 0: raise CompError(f'--tta {tta}: use 0 (none) or a number of passes such as 4')
    if tta and not 0 <= beta <= 1: raise CompError(f'--beta {beta}: use a weight between 0 and 1 (fastai: {BETA})')


def _group_predictions(group, tta, beta, workdir, comp):
    """A CV group's test probabilities averaged over its folds, and its out-of-fold validation probabilities."""
    import pandas as pd
    if any(m is None for m in group.members):
        raise CompError(f'CV group {group.name} is {group.status}: finish it with `comp cv --resume {group.name}`')
    parts = [predictions(m, tta, beta, workdir, comp) for m in group.members]
    id_col = comp.layout.id_col
    tests = [t.set_index(id_col) for t, _ in parts]
    if group.refit is not None:   # the refit votes on the test images like one more fold; it has no validation
        tests.append(predictions(group.refit, tta, beta, workdir, comp)[0].set_index(id_col))
    test = (sum(t.loc[tests[0].index] for t in tests) / len(tests)).reset_index()
    oof = pd.concat([v for _, v in parts]).sort_values(id_col).reset_index(drop=True)
    if oof[id_col].duplicated().any(): raise CompError(f'the folds of {group.name} validate on overlapping images')
    if tta: group.record_tta_error(tta, beta, error(oof, group.vocab, comp))
    return test, oof


def predict(run, tta=0, beta=BETA, workdir='.', name=None):
    """Write the run's test probabilities and a validated submission; return the submission's record
    (`submission`: its path; the run, TTA and validation errors)."""
    run = runs.find(run, workdir)
    _check_tta(tta, beta)
    check_complete(run)   # a failed or unfinished run (or group) predicts nothing, even from probabilities it stored
    comp = competition.find(run.config['data'], workdir)
    test, valid = predictions(run, tta, beta, workdir, comp)
    params = comp.fit_decode(valid, run.vocab)   # thresholds chosen on validation (out-of-fold for a group); {} for most
    record = {'runs': [run.name], **members([run]), 'weights': [1.0], 'tta': tta, 'beta': beta if tta else None, 'metric': comp.metric,
              'valid_error': run.result.get('valid_error'), 'valid_error_tta': error(valid, run.vocab, comp) if tta and len(valid) else None,
              **({'decode': params} if params else {})}
    sub = submission.from_probs(comp, test, run.vocab, params)
    default = f'{run.name}_tta{tta}{"" if beta == BETA else f"_beta{beta:g}"}' if tta else run.name
    path = submission.write(comp, sub, name or default, record, workdir, default_name=name is None)
    return {**record, 'submission': path, 'asked_name': name or default}


def _frame(comp, ids, probs, vocab):
    import pandas as pd
    df = pd.DataFrame(probs.float()[:, :len(vocab)].numpy(), columns=vocab)
    df.insert(0, comp.layout.id_col, list(ids))
    return df


def get_preds(learn, dl, tta=0, beta=BETA):
    """Probabilities for `dl`; with `tta` > 0, fastai's TTA (n augmented passes lerped with a plain pass)."""
    if not tta:
        preds, _ = learn.get_preds(dl=dl)
        return preds
    from .tta import tta as run_tta
    return run_tta(learn, dl, n=tta, beta=beta)
