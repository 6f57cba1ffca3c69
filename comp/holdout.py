"""`comp holdout`: a local competition carved from a real one's training set, scored offline."""
from pathlib import Path

from . import competition
from .config import check_seed
from .errors import ConfigError
from .files import atomic_dir, link_or_copy, write_csv

FRACS = (0.25, 0.2, 0.3, 0.1, 0.4, 0.5)   # fractions a refused --frac is offered, the default first


def holdout(dest, frac=0.25, seed=42, data=None, workdir='.'):
    """Split the competition's training set (stratified) into a new competition at `dest` with a solution.csv.

    `data`: the competition (or its folder); by default the one recorded in `workdir`."""
    import pandas as pd
    if not 0 < frac < 1: raise ConfigError(f'--frac {frac}: use a fraction between 0 and 1, such as 0.25')   # nan too
    check_seed(seed)
    comp = competition.find(data, workdir)
    dest = Path(dest)
    competition.check_new_folder(dest, source=comp)
    competition.check_folders_layout(comp, 'comp holdout')
    L = comp.layout
    train = pd.read_csv(comp.path / L.train_csv, dtype=str, keep_default_na=False)
    tr, te = _split(train, frac, seed, L)
    if tr is None:
        works = next((f for f in FRACS if _split(train, f, seed, L)[0] is not None), None)
        raise ConfigError(f'--frac {frac:g} leaves too few images: {te}; ' +
                          (f'use --frac {works:g}' if works else 'the competition has too few images of a label to hold any out'))
    te = te.sort_values(L.id_col)
    with atomic_dir(dest) as tmp:
        for i, lbl in zip(tr[L.id_col], tr[L.label_col]):
            link_or_copy(comp.train_path / lbl / i, tmp / L.train_dir / lbl / i)
        for i, lbl in zip(te[L.id_col], te[L.label_col]):
            link_or_copy(comp.train_path / lbl / i, tmp / L.test_dir / i)
        write_csv(tmp / L.train_csv, tr.sort_values([L.label_col, L.id_col]))
        write_csv(tmp / L.sample_csv, pd.DataFrame({L.id_col: te[L.id_col], L.label_col: ''}))
        write_csv(tmp / L.solution_csv, te[[L.id_col, L.label_col]])
    return dest


def _split(train, frac, seed, L):
    """(training rows, test rows) stratified by label, or (None, why not): sklearn's refusal (fewer test or training
    images than labels), or a label left with fewer than 2 training images, which the holdout's own shared split
    (stratified by label) could not split."""
    from sklearn.model_selection import train_test_split
    try: tr, te = train_test_split(train, test_size=frac, stratify=train[L.label_col], random_state=seed)
    except ValueError as e: return None, str(e).splitlines()[0]
    left = tr[L.label_col].value_counts().reindex(sorted(set(train[L.label_col])), fill_value=0)
    if left.min() < 2: return None, f'label {left.idxmin()} would keep {left.min()} training image(s), and needs 2'
    return tr, te
