"""Submission CSVs: written from probabilities, validated against sample_submission, scored against a solution."""
from pathlib import Path

from . import competition
from .competition import few
from .errors import SubmissionError
from .files import atomic_path, read_json, write_json

SUBMISSIONS_DIR = 'submissions'


def problems(comp, df):
    """Every way `df` fails to be a valid submission for `comp` (row order does not matter)."""
    L = comp.layout
    want = [L.id_col, L.label_col]
    if list(df.columns) != want:
        return [f'columns are {",".join(map(str, df.columns))}; expected {",".join(want)}']
    out = []
    ids, labels = df[L.id_col].astype(str), df[L.label_col]
    expected = set(comp.test_ids())
    rep = sorted(set(ids[ids.duplicated()]))
    if rep: out.append(f'{len(rep)} ids appear more than once: {few(rep)}')
    missing = sorted(expected - set(ids))
    if missing: out.append(f'{len(missing)} test ids are missing: {few(missing)}')
    extra = sorted(set(ids) - expected)
    if extra: out.append(f'{len(extra)} ids are not test ids: {few(extra)}')
    empty = df[labels.isna() | (labels.astype(str).str.strip() == '') | (ids.str.strip() == '')]
    if len(empty): out.append(f'{len(empty)} rows have an empty value (ids: {few(empty[L.id_col].astype(str))})')
    vocab = set(comp.vocab())
    unknown = sorted(set(labels.dropna().astype(str)) - vocab - {''})
    if unknown: out.append(f'unknown labels: {few(unknown)} (known: {", ".join(sorted(vocab))})')
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


def from_probs(comp, probs, vocab):
    """Submission rows in sample_submission's order, matched to `probs` (id column + vocab columns) by id."""
    L = comp.layout
    sample = comp.sample_df()
    p = probs.set_index(probs[L.id_col].astype(str))
    missing = [i for i in sample[L.id_col] if i not in p.index]
    if missing: raise SubmissionError(f'no predictions for {len(missing)} test ids: {few(missing)}')
    p = p.loc[sample[L.id_col], list(vocab)]
    labels = [vocab[i] for i in p.to_numpy().argmax(1)]
    return sample.assign(**{L.label_col: labels})[[L.id_col, L.label_col]]


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
    """Accuracy of a valid submission against the competition's solution.csv (a sample or holdout competition)."""
    import pandas as pd
    comp = competition.find(data, workdir)
    L = comp.layout
    if not comp.solution_path.exists():
        raise SubmissionError(f'{comp.path} has no {L.solution_csv} to score against: only the sample '
                              'competition and `comp holdout` folders have one; submit to Kaggle for a score')
    df = validate(path, comp)
    sol = pd.read_csv(comp.solution_path, dtype=str, keep_default_na=False)
    merged = sol.merge(df, on=L.id_col, suffixes=('_true', '_pred'))
    return float((merged[f'{L.label_col}_true'] == merged[f'{L.label_col}_pred']).mean())
