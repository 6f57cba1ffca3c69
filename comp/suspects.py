"""`comp suspects`: the training images whose labels look wrong, found by cleanlab (confident learning) from a CV
group's out-of-fold probabilities: each image is judged by a model that did not train on it, so a wrong label cannot
have been learnt. Written to the group's folder (comp.report shows them); `comp train --drop` trains without them.

`flip` writes a copy of a competition with some labels flipped on purpose: what bench/suspects_bench.py and the tests
measure `comp suspects` on."""
from pathlib import Path

from . import competition, runs
from .competition import LABEL
from .errors import CompError, ConfigError
from .files import write_csv

COLUMNS = ('given', 'suggested', 'score')   # after the competition's id column; comp.report reads them


def suspects(group, workdir='.'):
    """The training images cleanlab flags as probably mislabelled, worst first (lowest label quality): a DataFrame
    with the id column, the given label, the suggested one (the out-of-fold argmax) and cleanlab's label quality score
    (0 to 1, low is suspect), also written to the group's suspects.csv."""
    import numpy as np
    from cleanlab.filter import find_label_issues
    from cleanlab.rank import get_label_quality_scores
    from .predict import check_complete, predictions
    from .report import SUSPECTS_FILE
    group = runs.find(group, workdir)
    if group.config.get('kind') != 'cv':
        raise CompError(f'{group.name} is a single run: suspects need out-of-fold predictions of every training image, '
                        'from a CV group: run `comp cv ARCH --folds 5`, then `comp suspects GROUP`')
    comp = competition.find(group.config['data'], workdir)
    if comp.task != 'single':
        what = {'multi': 'several labels per image', 'regression': 'a number per image',
                'ordinal': 'ordinal grades, which comp regresses (one number, no class probabilities)'}.get(comp.task, comp.task)
        raise ConfigError(f'comp suspects finds wrong labels from class probabilities of one label per image; '
                          f'{comp.name} has {what}')
    check_complete(group)
    _, oof = predictions(group, workdir=workdir, comp=comp)
    vocab = group.vocab
    probs = oof[vocab].to_numpy(float)
    probs = probs / probs.sum(1, keepdims=True)   # the CSV's rounding: cleanlab wants rows that sum to 1
    labels = oof[LABEL].astype(str).map({v: i for i, v in enumerate(vocab)}).to_numpy()
    # Ranked by self-confidence, the same score as below: worst first, so the list and its scores agree.
    flagged = find_label_issues(labels, probs, return_indices_ranked_by='self_confidence', n_jobs=1)
    score = get_label_quality_scores(labels, probs, method='self_confidence')
    import pandas as pd
    id_col = comp.layout.id_col
    out = pd.DataFrame({id_col: oof[id_col].to_numpy()[flagged], 'given': oof[LABEL].astype(str).to_numpy()[flagged],
                        'suggested': np.asarray(vocab)[probs[flagged].argmax(1)], 'score': score[flagged].round(6)})
    write_csv(group.path / SUSPECTS_FILE, out)
    return out


def flip(source, dest, frac, seed=0):
    """A copy of folder-per-label competition `source` (hard links) at `dest` in which a stratified `frac` of the
    training images are moved to another label, drawn at random; returns the flipped rows (id, `label` as it was,
    `flipped` as it is now). Its test images and solution.csv (a holdout's) are the source's."""
    import shutil
    import numpy as np
    import pandas as pd
    from .files import atomic_dir, link_or_copy
    comp = competition.find(source)
    if not 0 < frac < 1: raise ConfigError(f'frac {frac}: use a fraction between 0 and 1, such as 0.1')
    competition.check_new_folder(Path(dest), source=comp)
    competition.check_folders_layout(comp, 'flipping labels')
    L = comp.layout
    train = pd.read_csv(comp.path / L.train_csv, dtype=str, keep_default_na=False)
    rng = np.random.default_rng(seed)
    vocab = sorted(set(train[L.label_col]))
    # A fraction of every label, so each keeps most of its images (and the shared split can still stratify).
    picked = np.concatenate([rng.choice(np.flatnonzero(train[L.label_col].to_numpy() == v),
                                        round(frac * (train[L.label_col] == v).sum()), replace=False) for v in vocab])
    was = train[L.label_col].copy()
    for i in picked: train.loc[i, L.label_col] = rng.choice([v for v in vocab if v != was[i]])
    with atomic_dir(dest) as tmp:
        for i, old, new in zip(train[L.id_col], was, train[L.label_col]):
            link_or_copy(comp.train_path / old / f'{i}{L.ext}', tmp / L.train_dir / new / f'{i}{L.ext}')
        for i in comp.test_ids(): link_or_copy(comp.path / comp.test_file(i), tmp / comp.test_file(i))
        write_csv(tmp / L.train_csv, train)
        for f in (L.sample_csv, L.solution_csv):
            if (comp.path / f).exists(): shutil.copyfile(comp.path / f, tmp / f)
    competition.load(dest, name=comp.name)   # checked as any competition is
    return pd.DataFrame({L.id_col: train[L.id_col].to_numpy()[picked], 'label': was.to_numpy()[picked],
                         'flipped': train[L.label_col].to_numpy()[picked]})
