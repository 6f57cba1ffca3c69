"""A competition described from its files (`comp setup`, `comp sample --like`): where its images and labels are,
the label kind, the submission format and the metric, inferred into a Layout."""
from pathlib import Path

from .errors import ConfigError, DataError
from .files import read_json
from .layout import LABEL, Layout, image_names, is_float, is_int, sorted_labels


def sample_csv(root):
    """The sample submission's file name in `root`, or None."""
    found = sorted(f.name for f in root.glob('*.csv') if f.name.lower().replace('_', '').startswith('samplesubmission'))
    return found[0] if found else None


def check_settings(metric=None, overrides=()):
    """A ConfigError for a metric or a layout setting comp does not know, before anything is downloaded or written."""
    from . import metrics
    unknown = sorted(set(overrides) - set(Layout.__dataclass_fields__))
    if unknown:
        raise ConfigError(f'--set {unknown[0]}: not a layout setting; use one of {", ".join(Layout.__dataclass_fields__)}')
    if metric is not None: metrics.check(metric)


def settings(pairs):
    """Layout overrides from `--set KEY=VALUE` strings; a VALUE that reads as JSON (a list, a number) is taken as such."""
    import json
    out = {}
    for p in pairs:
        k, eq, v = p.partition('=')
        if not eq or not k.strip():
            raise ConfigError(f'--set {p}: write KEY=VALUE, e.g. --set task=ordinal')
        try: out[k.strip()] = json.loads(v) if v[:1] in '[{' else v
        except ValueError: raise ConfigError(f'--set {p}: the value is not valid JSON') from None
    return out


def infer_layout(root, metric, kaggle_metric, given):
    """The Layout of the competition at `root`, from its files, the metric given (or Kaggle's name for it) and the
    settings `given`; ConfigError where the files leave a choice open."""
    import pandas as pd
    from . import metrics
    L = Layout(extra_cols=[], sub_cols=[])
    sample = given.get('sample_csv') or sample_csv(root)
    if not sample: raise DataError(f'{root} has no sample_submission.csv: comp takes the test ids and the submission\'s '
                                   'columns from it; add it from the competition\'s Data page')
    L.sample_csv = sample
    sub = pd.read_csv(root / sample, dtype=str, keep_default_na=False, nrows=200)
    if len(sub.columns) < 2: raise DataError(f'{sample} has {len(sub.columns)} column: expected an id column and what to predict')
    L.sub_cols, L.id_col = list(sub.columns), given.get('id_col', sub.columns[0])
    if L.sub_cols == [L.id_col, 'label'] and not given.get('sub_cols'): L.sub_cols = []   # Paddy's record stays as it was
    dirs = sorted(d.name for d in root.iterdir() if d.is_dir() and not d.name.startswith('.'))
    csvs = sorted(f.name for f in root.glob('*.csv'))
    skip = {sample, L.solution_csv, L.pseudo_csv}
    L.test_csv = given.get('test_csv', next((f for f in csvs if f.lower() == 'test.csv'), ''))
    if L.test_csv: skip.add(L.test_csv)
    cands = [f for f in csvs if f not in skip and L.id_col in pd.read_csv(root / f, nrows=0).columns]
    train_csv = given.get('train_csv') or next((f for f in cands if f.lower() == 'train.csv'), None)
    if train_csv is None and len(cands) > 1:
        raise ConfigError(f'{root} has several label files ({", ".join(cands)}): choose with --set train_csv=NAME')
    train_csv = train_csv or (cands[0] if cands else '')

    def image_dir(prefix, ids=None):
        named = [d for d in dirs if d.lower().startswith(prefix)]
        shared = [d for d in dirs if d.lower() in ('images', 'imgs', 'image')]
        for d in named + shared:
            if image_names(root / d) or any(image_names(s) for s in (root / d).iterdir() if s.is_dir()): return d
        return None

    L.train_dir = given.get('train_dir') or image_dir('train') or ''
    L.test_dir = given.get('test_dir') or image_dir('test') or L.train_dir
    if not L.train_dir: raise DataError(f'{root} has no folder of training images (train/, train_images/ or images/): '
                                        'unpack the download, or name it with --set train_dir=FOLDER')
    train_root = root / L.train_dir
    flat = image_names(train_root)
    sub_dirs = [d for d in train_root.iterdir() if d.is_dir() and image_names(d)]
    if not train_csv:
        if not flat: raise DataError(f'{root} has no label file (train.csv) and {L.train_dir}/ no image files to read labels from')
        L.images, L.train_csv, L.label_col = 'names', '', LABEL
        if not all('.' in f.rsplit('.', 1)[0] for f in flat):
            raise DataError(f'{root} has no label file (train.csv), and the names in {L.train_dir}/ do not start with a '
                            'label (such as cat.1.jpg): add the labels as a CSV')
        train = pd.DataFrame({LABEL: [f.split('.')[0] for f in flat]})
    else:
        L.train_csv = train_csv
        train = pd.read_csv(root / train_csv, dtype=str, keep_default_na=False)
        L.images = 'folders' if sub_dirs and not flat else 'flat'
    # Ids written without the file's extension (the training ids, else the test ids, tell).
    if L.images == 'names':
        ids, files, where = list(sub[L.id_col]), image_names(root / L.test_dir), L.sample_csv
    else:
        ids, files, where = list(train[L.id_col]), flat | {f for d in sub_dirs for f in image_names(d)}, L.train_csv
    if ids and not any(i in files for i in ids[:50]):
        exts = sorted({Path(f).suffix for f in files if Path(f).stem in set(ids)})
        if len(exts) > 1: raise ConfigError(f'{where} ids name images with several extensions ({", ".join(exts)}): choose with --set ext=.jpg')
        L.ext = exts[0] if exts else ''
    # The label: one-hot columns (the submission's class columns), else the column the submission predicts, else the one left.
    value_cols = L.columns[1:]
    if L.images == 'names':
        pass
    elif len(value_cols) > 1 and all(c in train.columns for c in value_cols):
        L.label_cols, L.label_col = value_cols, ''
    else:
        others = [c for c in train.columns if c != L.id_col]
        pick = [c for c in value_cols if c in others] or \
               [c for c in others if set(value_cols) <= set(train[c])] or (others if len(others) == 1 else [])
        if given.get('label_col'): pick = [given['label_col']]
        if len(pick) != 1:
            raise ConfigError(f'{L.train_csv} does not say which column is the label ({", ".join(others)}): '
                              'choose with --set label_col=NAME')
        L.label_col = pick[0]
    L.extra_cols = ['variety', 'age'] if L.images == 'folders' and {'variety', 'age'} <= set(train.columns) else []
    # The metric as given, else as Kaggle names it, else the usual one for the label kind.
    key = metric or (metrics.from_kaggle(kaggle_metric) if kaggle_metric else None)
    if L.label_cols:
        hot = train[L.label_cols].apply(pd.to_numeric, errors='coerce').fillna(0).to_numpy() > 0.5
        L.task = 'single' if (hot.sum(1) == 1).all() else 'multi'
        labels = L.label_cols
    else:
        col = train[LABEL if L.images == 'names' else L.label_col].astype(str)
        labels = sorted(set(col))
        if L.images != 'folders' and _several(col): L.task = 'multi'
        elif all(is_float(v) for v in labels) and len(labels) > 2:
            ints = all(is_int(v) for v in labels)
            if key == 'qwk': L.task = 'ordinal'    # a grade: regressed, then cut by thresholds chosen on validation
            elif key == 'rmse' or not ints or len(labels) > 30: L.task = 'regression'
            else: L.task = 'single'                 # integer codes of classes (cassava)
        else: L.task = 'single'
        if L.task in ('regression', 'ordinal'):
            vals = col.astype(float)
            L.range = [float(vals.min()), float(vals.max())]
    if 'task' in given: L.task = given['task']
    if len(value_cols) > 1: L.submission = 'probs'
    elif L.task == 'multi': L.submission = 'labels'
    elif L.task == 'regression': L.submission = 'number'
    elif L.task == 'ordinal': L.submission = 'grade'
    elif len(labels) == 2 and (_sample_kind(sub, value_cols) == 'prob' or key in ('auc', 'log_loss')): L.submission = 'prob'
    else: L.submission = 'label'
    if L.submission == 'prob': L.positive = sorted_labels(labels)[-1]
    L.metric = key or metrics.default_for(L.task, L.submission)
    names = [f for f in root.glob('*.json') if f.name != 'comp.json']
    for f in names:
        try: m = read_json(f)
        except Exception: continue
        if isinstance(m, dict) and set(map(str, m)) == set(labels): L.names = {str(k): str(v) for k, v in m.items()}
    return L


def _several(col):
    """Whether a label column lists several labels per image (space-separated), rather than names with spaces in them:
    its values are combinations of fewer labels than there are values."""
    values = set(col.str.strip())
    if not any(' ' in v for v in values): return False
    return len({t for v in values for t in v.split()}) < len(values)


def _sample_kind(sub, value_cols):
    """What the sample submission's one value column holds: 'prob' (fractions), 'int', 'text' or 'empty'."""
    vals = [v for v in sub[value_cols[0]] if v != ''] if value_cols else []
    if not vals: return 'empty'
    if all(is_int(v) for v in vals): return 'int'
    if all(is_float(v) and 0 <= float(v) <= 1 for v in vals): return 'prob'
    return 'text'
