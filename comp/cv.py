"""`comp cv`: K-fold cross-validation groups. Every fold of the shared K-fold split is a normal, resumable run;
the group records them, their out-of-fold probabilities (each training image predicted once, by the model that
did not see it) and their fold-averaged test probabilities, and is usable wherever a run is (predict, ensemble,
the runs table)."""
from dataclasses import asdict, replace

from . import competition, runs, train
from .errors import ConfigError
from .learner import error



def cv(cfg, folds=5, workdir='.', resume=None, quiet=False, echo=print, cbs=()):
    """Train every fold of the shared `folds`-fold split with `cfg` and return the group (a Run whose `members` are
    the fold runs and whose `result` holds the CV error). With `resume`, finish an interrupted group: complete
    folds are kept as they are, an interrupted fold is resumed, missing folds are trained. `cbs`: more fastai
    callbacks for every fold's fit (comp auto's deadline)."""
    if resume is not None:
        group = runs.find(resume, workdir)
        if group.config.get('kind') != 'cv': raise ConfigError(f'{group.name} is a run, not a CV group: resume it with `comp train --resume`')
        c = group.config['train']
        comp = competition.find(c['data'], workdir)
    else:
        if folds is None or folds < 2: raise ConfigError(f'--folds {folds}: use 2 or more')
        comp = competition.find(cfg.data, workdir)
        c = train.resolve(replace(cfg, folds=folds, fold=0), comp)
        # What the user asked, so each fold resolves exactly as fold 0 did (a resumed fold is found by its config).
        asked = {**asdict(cfg), 'folds': folds}
        group = runs.create(workdir, {**c, 'kind': 'cv', 'name': f'cv{folds}-{c["name"]}', 'fold': 'oof',
                                      'train': c, 'asked': asked, 'members': [None] * folds})
    group.set_status('running')
    try:
        for i in range(c['folds']):
            _fold(group, c, i, comp, workdir, quiet, echo, cbs)
        result = _combine(group, comp, workdir)
    except BaseException as e:
        group.set_status('incomplete' if isinstance(e, KeyboardInterrupt) else 'failed', error=str(e)[:500])
        raise
    group.write_result(result)
    group.set_status('complete')
    return group


def _fold(group, c, i, comp, workdir, quiet, echo, cbs=()):
    members = group.config['members']
    found = group.members[i]
    if found is not None and found.status == 'complete': return
    want = train.identity({**c, 'fold': i})
    found = found or next((r for r in reversed(runs.all_runs(workdir))
                           if r.status == 'incomplete' and train.identity(r.config) == want), None)
    if found is not None:
        echo(f'fold {i}: resuming {found.name}')
        run = train.train(None, workdir=workdir, resume=found, quiet=quiet, cbs=cbs)
    else:
        echo(f'fold {i} of {c["folds"]}: training')
        cfg = train.TrainConfig(**{**group.config['asked'], 'fold': i})
        run = train.train(cfg, workdir=workdir, quiet=quiet, cbs=cbs)
    group.write_config({**group.config, 'members': [*members[:i], run.name, *members[i + 1:]]})


def _combine(group, comp, workdir):
    """Out-of-fold and fold-averaged test probabilities of the group's folds, and its CV error."""
    from .predict import predictions
    members = group.members
    test, oof = predictions(group, workdir=workdir, comp=comp)
    vocab = members[0].vocab
    group.write_vocab(vocab)
    return {'valid_error': error(oof, vocab), 'fold_errors': [m.result['valid_error'] for m in members],
            'n_valid': len(oof), 'seconds': round(sum(m.result.get('seconds', 0) for m in members), 1),
            'precision': members[0].result.get('precision')}
