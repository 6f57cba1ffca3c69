"""`comp cv`: K-fold cross-validation groups. Every fold of the shared K-fold split is a normal, resumable run;
the group records them, their out-of-fold probabilities (each training image predicted once, by the model that
did not see it) and their fold-averaged test probabilities, and is usable wherever a run is (predict, ensemble,
the runs table). With `refit`, one more model is trained on every training image with the folds' settings and
epochs; its test probabilities join the folds' (one vote each), and it has no validation score of its own."""
from dataclasses import asdict, replace

from . import competition, runs, train
from .config import TrainConfig, flag, given, resolve
from .errors import CompError, ConfigError
from .learner import error

FOLDS = 5


def cv(cfg, folds=None, workdir='.', resume=None, quiet=False, echo=print, refit=False, cbs=()):
    """Train every fold of the shared `folds`-fold split (default 5) with `cfg` and return the group (a Run whose
    `members` are the fold runs and whose `result` holds the CV error). With `resume` (and no `cfg`), finish an
    interrupted group: complete folds are kept as they are, an interrupted fold is resumed, missing folds are trained
    (and with `refit`, a group finished without one gets its refit). `cbs`: more fastai callbacks for every model's
    fit (comp auto's deadline)."""
    from .distributed import launched
    if launched():   # every process would make its own group of the same folds
        raise ConfigError('comp cv under a launcher would make one group per process: run `comp cv` itself, '
                          'without torchrun or accelerate launch')
    if cfg is None and resume is None:
        raise ConfigError('comp cv: give an ARCH to cross-validate, or --resume GROUP to finish one')
    if cfg is not None and resume is not None:
        asked = [flag(k) for k in given(cfg) if k != 'arch'] or ['ARCH']
        raise ConfigError(f'--resume continues CV group {resume} with its saved config: drop {", ".join(asked)} '
                          '(or cross-validate anew with them)')
    if resume is not None:
        group = runs.find(resume, workdir)
        if group.config.get('kind') != 'cv': raise ConfigError(f'{group.name} is a run, not a CV group: resume it with `comp train --resume`')
        if folds is not None and folds != group.config['train']['folds']:
            raise ConfigError(f'--resume continues CV group {group.name} with its own {group.config["train"]["folds"]} '
                              'folds: drop --folds (or cross-validate anew with them)')
        _check_resume(group)
        c = group.config['train']
        comp = competition.find(c['data'], workdir)
    else:
        folds = FOLDS if folds is None else folds
        if folds < 2: raise ConfigError(f'--folds {folds}: use 2 or more')
        comp = competition.find(cfg.data, workdir)
        c = resolve(replace(cfg, folds=folds, fold=0), comp)
        # What the user asked, so each fold resolves exactly as fold 0 did (a resumed fold is found by its config).
        asked = {**asdict(cfg), 'folds': folds}
        _check_folds(asked, comp, workdir, refit)
        group = runs.create(workdir, {**c, 'kind': 'cv', 'name': f'cv{folds}-{c["name"]}', 'fold': 'oof',
                                      'train': c, 'asked': asked, 'members': [None] * folds, 'refit': None})
    # A complete group (given its refit, say) stays as it was when this fails: its record, result and status.
    was = group.config if group.status == 'complete' else None
    group.set_status('running')
    try:
        for i in range(c['folds']):
            _fold(group, c, i, comp, workdir, quiet, echo, cbs)
        if refit or group.config.get('refit'): _refit(group, comp, workdir, quiet, echo, cbs)
        result = _combine(group, comp, workdir)
    except BaseException as e:
        # Ctrl-C: the CLI's hint resumes the whole group, not the fold that was training.
        e.comp_resume = f'resume with `comp cv --resume {group.name}{" --refit" if refit else ""}`'
        try:
            if was is not None:
                group.write_config(was)
                group.set_status('complete')
            else: group.set_status('incomplete' if isinstance(e, KeyboardInterrupt) else 'failed', error=str(e)[:500])
        except OSError: pass   # a full or read-only disk: the error being raised says so
        raise
    group.write_result(result)
    group.set_status('complete')
    return group


def _check_resume(group):
    """A group is resumed by one process, and only when every run it records can be read."""
    if group.status == 'running':
        raise CompError(f'CV group {group.name} is still running in process {group.status_record().get("pid")}: '
                        'wait for it to finish, or stop that process and resume then')
    for run in group.parts:   # a fold whose folder is gone says so
        if run is not None: run.config   # a damaged config says so


def _check_folds(asked, comp, workdir, refit):
    """Every fold's (and the refit's) settings, checked as `comp train` checks a run's: a setting no fold can train
    with fails before the group exists."""
    from .learner import precision
    cs = [resolve(TrainConfig(**{**asked, 'fold': i}), comp) for i in range(asked['folds'])]
    if refit: cs.append(resolve(_refit_config(asked), comp))
    precision(cs[0]['precision'])   # a precision this machine cannot run
    for c in cs: train._check(c, comp, workdir)


def _fold(group, c, i, comp, workdir, quiet, echo, cbs=()):
    def record(run):   # as soon as the fold's run exists, so an interrupted fold is still the group's
        members = group.config['members']
        if members[i] != run.name: group.write_config({**group.config, 'members': [*members[:i], run.name, *members[i + 1:]]})
    cfg = TrainConfig(**{**group.config['asked'], 'fold': i})
    _train_or_resume(cfg, group.members[i], {**c, 'fold': i}, f'fold {i}', f'fold {i} of {c["folds"]}',
                     workdir, quiet, echo, cbs, record)


def _refit_config(asked):
    return TrainConfig(**{**asked, 'folds': None, 'fold': 0, 'valid_pct': 0})


def refit_config(group):
    """The TrainConfig of a group's refit: what its folds were asked, on every training image (no validation set)."""
    return _refit_config(group.config['asked'])


def _refit(group, comp, workdir, quiet, echo, cbs=()):
    def record(run):
        if group.config.get('refit') != run.name: group.write_config({**group.config, 'refit': run.name})
    cfg = refit_config(group)
    _train_or_resume(cfg, group.refit, resolve(cfg, comp), 'refit',
                     f'refit on all {len(comp.train_df())} training images', workdir, quiet, echo, cbs, record)


def _train_or_resume(cfg, known, c, what, new, workdir, quiet, echo, cbs, record):
    """Nothing when the group's `known` run is complete; else that run resumed (one that failed is trained anew), or
    the run trained before with resolved config `c` (a group interrupted before it recorded its run: complete, or
    resumed), else a new run of `cfg`; `record(run)` records it in the group as soon as it is known."""
    if known is not None and known.status == 'complete': return
    found = known if known is not None and known.status == 'incomplete' else runs.trained(c, workdir)
    if found is not None and found.status == 'complete':
        echo(f'{what}: {found.name}, trained before')
        record(found)
        return
    if found is not None:
        echo(f'{what}: resuming {found.name}')
        record(found)
        train.train(None, workdir=workdir, resume=found, quiet=quiet, cbs=cbs)
        return
    echo(f'{new}: training')
    train.train(cfg, workdir=workdir, quiet=quiet, cbs=cbs, created=record)


def _combine(group, comp, workdir):
    """Out-of-fold and fold-averaged test probabilities of the group's folds, and its CV error."""
    from .predict import predictions
    members = group.members
    test, oof = predictions(group, workdir=workdir, comp=comp)
    vocab = members[0].vocab
    group.write_vocab(vocab)
    refit = group.refit
    extra = {'refit': refit.name, 'test_models': len(members) + 1} if refit is not None else {}
    params = comp.fit_decode(oof, vocab)   # thresholds chosen on the out-of-fold predictions
    extra.update(metric=comp.metric, valid_score=comp.score(oof, vocab, params))
    return {'valid_error': error(oof, vocab, comp), **extra, 'fold_errors': [m.result['valid_error'] for m in members],
            'n_valid': len(oof), 'seconds': round(sum(m.result.get('seconds', 0) for m in group.parts), 1),
            'precision': members[0].result.get('precision')}
