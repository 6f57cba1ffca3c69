"""`comp pseudo`: a local competition whose training set adds the test images a submission's models are confident
about, labelled as they predicted them (pseudo-labels). Files are hard links, as `comp holdout` makes them.

The derived competition lists its pseudo-labelled rows in pseudo.csv; the shared split and folds are of the real
training images only (comp.data), so they are the source's, and a pseudo-labelled image never validates."""
import shutil
from pathlib import Path

from . import competition, runs, submission
from .errors import ConfigError
from .config import BETA
from .files import atomic_dir, link_or_copy, write_csv


def test_probs(path, workdir='.'):
    """(competition, probabilities of the test images, vocab) of the runs that made a submission, as its record says."""
    rec = submission.read_sidecar(path)
    if not Path(path).is_file(): raise ConfigError(f'{path}: no such submission')
    if not rec.get('runs'):
        raise ConfigError(f'{path} has no record of the runs that made it ({submission.sidecar_path(path).name}): '
                          'pseudo-labels need their probabilities; use a submission written by comp predict or comp ensemble')
    return record_probs(rec, path, workdir)


def record_probs(rec, what, workdir='.'):
    """(competition, test probabilities, vocab) of the runs a submission's record (or a teacher's) names, combined as
    it combined them: its TTA, weights or stacked model. `what` names it in errors."""
    from .predict import check_complete, predictions
    rs = [runs.find(r, workdir) for r in rec['runs']]
    for r in rs:
        check_complete(r)
        made = (rec.get('members') or {}).get(r.name)
        now = [m.name for m in r.parts]
        if made is not None and made != now:   # a refit added since: these probabilities are not the submission's
            raise ConfigError(f'{what} was made by CV group {r.name} with runs {", ".join(made)}; it now has '
                              f'{", ".join(now)}: write a new submission of it (`comp predict {r.name}`) and use that')
    comp = competition.find(rs[0].config['data'], workdir)
    tta, beta = rec.get('tta') or 0, rec.get('beta') if rec.get('beta') is not None else BETA
    vocab, id_col = rs[0].vocab, comp.layout.id_col
    import numpy as np
    import pandas as pd
    from .blending import combine
    weights = np.asarray(rec.get('weights') or [1.0] * len(rs), float)
    tests = [predictions(r, tta, beta, workdir, comp)[0].set_index(id_col)[vocab] for r in rs]
    idx = tests[0].index
    # as the submission combined them: weighted, or through its stacked model
    probs = combine({**rec, 'weights': weights / weights.sum()}, [t.loc[idx].to_numpy() for t in tests])
    return comp, pd.DataFrame(probs, index=idx, columns=vocab), vocab


def pseudo(path, threshold=0.9, dest=None, workdir='.'):
    """Write the derived competition (at `dest`, by default ./pseudo-<submission>-p<threshold>) and return
    (its folder, how many test images it pseudo-labelled)."""
    import pandas as pd
    if not 0 < threshold <= 1: raise ConfigError(f'--threshold {threshold}: use a probability above 0, up to 1, such as 0.9')
    dest = Path(dest or Path(workdir) / f'pseudo-{Path(path).stem}-p{threshold:g}')
    competition.check_new_folder(dest, '--dest')
    comp, probs, vocab = test_probs(path, workdir)
    competition.check_new_folder(dest, '--dest', source=comp)   # again, knowing the source's own layout
    competition.check_folders_layout(comp, 'comp pseudo')
    top = probs.max(axis=1)
    chosen = top[top >= threshold].index
    if not len(chosen):
        raise ConfigError(f'no test image has a probability of {threshold:g} or more (the highest is {top.max():.3f}): '
                          'use a lower --threshold')
    L = comp.layout
    train = pd.read_csv(comp.path / L.train_csv, dtype=str, keep_default_na=False)
    train = train[~train[L.id_col].isin(comp.pseudo_ids())]   # pseudo-labels of an earlier round are replaced
    labels = probs.loc[chosen].idxmax(axis=1)
    new = pd.DataFrame({c: '' for c in train.columns}, index=range(len(chosen)))
    new[L.id_col], new[L.label_col] = list(chosen), list(labels)
    with atomic_dir(dest) as tmp:
        for i, lbl in zip(train[L.id_col], train[L.label_col]): link_or_copy(comp.train_path / lbl / i, tmp / L.train_dir / lbl / i)
        for i in comp.test_ids(): link_or_copy(comp.test_path / i, tmp / L.test_dir / i)
        for i, lbl in zip(new[L.id_col], new[L.label_col]): link_or_copy(comp.test_path / i, tmp / L.train_dir / lbl / i)
        # the real rows first, in their order, so a split computed here is the source's
        write_csv(tmp / L.train_csv, pd.concat([train, new], ignore_index=True))
        shutil.copyfile(comp.path / L.sample_csv, tmp / L.sample_csv)
        if comp.solution_path.exists(): shutil.copyfile(comp.solution_path, tmp / L.solution_csv)  # a holdout still scores
        write_csv(tmp / L.pseudo_csv, pd.DataFrame({L.id_col: list(chosen), L.label_col: list(labels),
                                                    'probability': top.loc[chosen].round(4).to_numpy(),
                                                    'submission': Path(path).name}))
    competition.load(dest, name=comp.name)   # checked as any competition is
    return dest, len(chosen)
