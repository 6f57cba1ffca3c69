"""Submission CSVs: written from probabilities, validated against sample_submission, scored against a solution."""
from pathlib import Path

from . import competition
from .competition import few
from .errors import SubmissionError
from .files import atomic_path, read_json, write_json

SUBMISSIONS_DIR = 'submissions'


def problems(comp, df):
    """Every way `df` fails to be a valid submission for `comp` (row order does not matter): its columns, ids and
    values as the competition's format wants them."""
    L = comp.layout
    want = L.columns
    if list(df.columns) != want:
        shown = lambda cols: ",".join(map(str, cols[:6])) + (f",... ({len(cols)} columns)" if len(cols) > 6 else "")
        return [f'columns are {shown(list(df.columns))}; expected {shown(want)}']
    out = []
    ids = df[L.id_col].astype(str)
    expected = set(comp.test_ids())
    rep = sorted(set(ids[ids.duplicated()]))
    if rep: out.append(f'{len(rep)} ids appear more than once: {few(rep)}')
    missing = sorted(expected - set(ids))
    if missing: out.append(f'{len(missing)} test ids are missing: {few(missing)}')
    extra = sorted(set(ids) - expected)
    if extra: out.append(f'{len(extra)} ids are not test ids: {few(extra)}')
    values = df[want[1:]]
    blank = values.isna().any(axis=1) | (values.astype(str).apply(lambda c: c.str.strip()) == '').any(axis=1) | (ids.str.strip() == '')
    if L.submission == 'labels': blank = ids.str.strip() == ''   # an image may have no label
    if blank.any(): out.append(f'{int(blank.sum())} rows have an empty value (ids: {few(df[L.id_col][blank].astype(str))})')
    return out + _value_problems(comp, values[~blank])


def _value_problems(comp, values):
    """What is wrong with the values of the rows that have them, for the competition's submission format."""
    import numpy as np
    import pandas as pd
    L, kind = comp.layout, comp.layout.submission
    col = values.columns[0]
    if kind in ('label', 'labels'):
        vocab = set(comp.vocab())
        given = values[col].astype(str)
        tokens = {t for v in given for t in v.split()} if kind == 'labels' else set(given)
        unknown = sorted(tokens - vocab - {''})
        return [f'unknown labels: {few(unknown)} (known: {few(sorted(vocab), 12)})'] if unknown else []
    nums = values.apply(pd.to_numeric, errors='coerce')
    bad = nums.isna().any(axis=1) | ~np.isfinite(nums.fillna(0)).all(axis=1)
    if bad.any(): return [f'{int(bad.sum())} rows have a value that is not a number: {few(values[bad].iloc[:, 0].astype(str))}']
    v = nums.to_numpy()
    out = []
    if kind in ('prob', 'probs') and ((v < 0) | (v > 1)).any():
        out.append(f'{int(((v < 0) | (v > 1)).any(axis=1).sum())} rows have probabilities outside [0, 1]')
    if kind == 'probs' and comp.metric == 'log_loss' and (np.abs(v.sum(1) - 1) > 1e-6).any():
        out.append(f'{int((np.abs(v.sum(1) - 1) > 1e-6).sum())} rows do not sum to 1 (the metric, log loss, needs '
                   'a distribution over the classes per row)')
    if kind == 'grade' and (v != np.round(v)).any():
        out.append(f'{int((v != np.round(v)).any(axis=1).sum())} rows have a grade that is not an integer')
    if kind in ('grade', 'number') and L.range:
        lo, hi = L.range
        off = ((v < lo) | (v > hi)).any(axis=1)
        if off.any(): out.append(f'{int(off.sum())} rows are outside {lo:g}..{hi:g}, the range of the training labels')
    return out


def read(path):
    """A submission CSV read as strings, or a SubmissionError saying why it cannot be read."""
    import pandas as pd
    path = Path(path)
    if not path.is_file(): raise SubmissionError(f'{path}: no such file')
    try: return pd.read_csv(path, dtype=str, keep_default_na=False)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as e:
        raise SubmissionError(f'{path} is not a readable CSV ({str(e).splitlines()[0]})') from None


def validate(path, data=None, workdir='.'):
    """Raise one SubmissionError listing every problem of the file at `path`; return its DataFrame if valid.

    `data`: the competition (or its folder); by default the one recorded in `workdir`."""
    comp = competition.find(data, workdir, check_images=False)
    df = read(path)
    found = problems(comp, df)
    if found: raise SubmissionError(f'{path} is not a valid submission: ' + '; '.join(found))
    return df


def from_probs(comp, probs, vocab, params=None):
    """Submission rows in sample_submission's order, matched to `probs` (id column + vocab columns) by id, in the
    competition's format: decoded with `params` (thresholds chosen on validation), or the probabilities themselves."""
    L = comp.layout
    sample = comp.sample_df()
    p = probs.set_index(probs[L.id_col].astype(str))
    missing = [i for i in sample[L.id_col] if i not in p.index]
    if missing: raise SubmissionError(f'no predictions for {len(missing)} test ids: {few(missing)}')
    p = p.loc[sample[L.id_col], list(vocab)]
    cols = L.columns
    out = sample[[L.id_col]].copy()
    if L.submission == 'probs':
        absent = [c for c in cols[1:] if c not in vocab]
        if absent: raise SubmissionError(f'the submission wants columns the model has no output for: {few(absent)}')
        for c in cols[1:]: out[c] = p[c].to_numpy()
    elif L.submission == 'prob':
        out[cols[1]] = p[comp._positive(list(vocab))].to_numpy()
    else:
        out[cols[1]] = comp.decode(p.to_numpy(), list(vocab), params)
    return out.reset_index(drop=True)


def write(comp, df, name, sidecar, workdir='.', default_name=False):
    """Validate `df`, then write submissions/<name>.csv atomically with a <name>.json sidecar beside it; return the path.

    Nothing is replaced silently and no Kaggle record is lost: writing the same predictions with the same record
    again keeps the sidecar's `kaggle` entries; other predictions under a `default_name` go to the first free
    <name>-2, -3, ... (the returned path says which), and under a name the user chose are refused."""
    found = problems(comp, df)
    if found: raise SubmissionError(f'submission {name} would be invalid, nothing written: ' + '; '.join(found))
    folder = Path(workdir) / SUBMISSIONS_DIR
    text = df.to_csv(index=False)
    rec = {'competition': comp.name, **sidecar}
    for k in range(1, 1000):
        path = folder / (f'{name}.csv' if k == 1 else f'{name}-{k}.csv')
        old = read_sidecar(path) if path.exists() else None
        if old is None or (path.read_text() == text and _same_record(old, rec)): break
        if not default_name:
            sent = ' and was submitted to Kaggle' if old.get('kaggle') else ''
            raise SubmissionError(f'{path} already holds other predictions{sent}: choose another --name, '
                                  'or delete it (and its .json) first')
    with atomic_path(path) as tmp: Path(tmp).write_text(text)
    kaggle = {'kaggle': old['kaggle']} if old and old.get('kaggle') else {}
    write_json(sidecar_path(path), {'competition': comp.name, 'file': path.name, **sidecar, **kaggle})
    return path


def _same_record(old, new):
    """Whether a sidecar describes the same submission as `new` (what Kaggle said about it aside)."""
    strip = lambda r: {k: v for k, v in r.items() if k not in ('kaggle', 'file')}
    import json
    return json.dumps(strip(old), sort_keys=True, default=str) == json.dumps(strip(new), sort_keys=True, default=str)


def sidecar_path(path):
    """The JSON record beside a submission CSV."""
    return Path(path).with_suffix('.json')


def read_sidecar(path):
    """The submission's sidecar record, or {} when it has none."""
    f = sidecar_path(path)
    return read_json(f) if f.exists() else {}


def score(path, data=None, workdir='.'):
    """The competition's metric of a valid submission against its solution.csv (a sample or holdout competition)."""
    from . import metrics
    comp = competition.find(data, workdir)
    L = comp.layout
    if not comp.solution_path.exists():
        raise SubmissionError(f'{comp.path} has no {L.solution_csv} to score against: only the sample '
                              'competition and `comp holdout` folders have one; submit to Kaggle for a score')
    import pandas as pd
    df = validate(path, comp)
    sol = pd.read_csv(comp.solution_path, dtype=str, keep_default_na=False)   # comp's own file (sample, holdout)
    return metrics.score_frames(comp.metric, L.submission, sol, df, L.id_col, positive=comp._positive(comp.vocab()))
