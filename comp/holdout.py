"""`comp holdout`: a local competition carved from a real one's training set, scored offline."""
from pathlib import Path

from . import competition
from .errors import ConfigError
from .files import atomic_dir, link_or_copy, write_csv


def holdout(dest, frac=0.25, seed=42, data=None, workdir='.'):
    """Split the competition's training set (stratified) into a new competition at `dest` with a solution.csv.

    `data`: the competition (or its folder); by default the one recorded in `workdir`."""
    import pandas as pd
    from sklearn.model_selection import train_test_split
    comp = competition.find(data, workdir)
    dest = Path(dest)
    if dest.exists() and any(dest.iterdir()):
        raise ConfigError(f'{dest} is not empty: choose a new folder or delete it first')
    if not 0 < frac < 1: raise ConfigError(f'--frac {frac} must be between 0 and 1')
    L = comp.layout
    train = pd.read_csv(comp.path / L.train_csv, dtype=str, keep_default_na=False)
    tr, te = train_test_split(train, test_size=frac, stratify=train[L.label_col], random_state=seed)
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
