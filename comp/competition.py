"""A competition on disk in Kaggle's layout: paths, csv columns, vocab, test ids, and its validation."""
import hashlib
import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path

from .errors import ConfigError, DataError, few
from .machine import cpus
from .files import read_json, write_json

PADDY = 'paddy-disease-classification'
WORKSPACE_FILE = 'comp.json'
IMAGE_EXTS = {'.jpg', '.jpeg', '.png', '.bmp', '.webp', '.tif', '.tiff'}


LABEL = 'label'      # the label column of `Competition.train_df`, whatever the CSV calls it
VALUE = 'value'      # the one output of a regressed target (regression, ordinal grade)
TASKS = ('single', 'multi', 'regression', 'ordinal')
SUBMISSIONS = ('label', 'probs', 'prob', 'labels', 'grade', 'number')
IMAGES = ('folders', 'flat', 'names')


@dataclass
class Layout:
    """How a competition is laid out and judged; the defaults are Paddy Doctor's (`describe` infers the rest)."""
    train_dir: str = 'train_images'
    test_dir: str = 'test_images'
    train_csv: str = 'train.csv'
    sample_csv: str = 'sample_submission.csv'
    solution_csv: str = 'solution.csv'
    pseudo_csv: str = 'pseudo.csv'        # `comp pseudo`: which train.csv rows are pseudo-labelled test images
    id_col: str = 'image_id'
    label_col: str = 'label'
    extra_cols: list = field(default_factory=lambda: ['variety', 'age'])   # columns train.csv must have
    images: str = 'folders'    # train_dir/<label>/<file> | train_dir/<file> | no label CSV: the label is the file name up to its first '.'
    ext: str = ''              # appended to an id to name its file (ids written without extension)
    test_csv: str = ''         # where the test ids are listed; '' = the sample submission
    task: str = 'single'       # one class per image | several | a number | an integer grade
    label_cols: list = field(default_factory=list)   # one-hot label columns (then label_col is unused)
    names: dict = field(default_factory=dict)        # code -> class name, for messages only
    submission: str = 'label'  # a class per row | one probability per class | P(positive) | space-separated labels | a grade | a number
    sub_cols: list = field(default_factory=list)     # the sample submission's columns; [] = id_col, label_col
    positive: str = ''         # 'prob' submissions: the class whose probability is written
    metric: str = 'accuracy'   # a key of comp.metrics.METRICS
    range: list = field(default_factory=list)        # [lo, hi] of a regressed target

    @property
    def columns(self): return self.sub_cols or [self.id_col, self.label_col]


@dataclass
class Competition:
    """A competition folder; `load` validates it before you get one."""
    path: Path
    name: str = PADDY
    layout: Layout = field(default_factory=Layout)

    @property
    def train_path(self): return self.path / self.layout.train_dir

    @property
    def test_path(self): return self.path / self.layout.test_dir

    @property
    def solution_path(self): return self.path / self.layout.solution_csv

    task = property(lambda self: self.layout.task)
    metric = property(lambda self: self.layout.metric)

    def train_df(self):
        """The training images: the id column, `path` (relative to the competition folder) and `label` (a class name;
        several space-separated for 'multi'; the number for a regressed target), beside the CSV's other columns."""
        import pandas as pd
        L = self.layout
        if L.images == 'names':
            files = sorted(f.name for f in self.train_path.iterdir() if f.suffix.lower() in IMAGE_EXTS)
            return pd.DataFrame({L.id_col: files, 'path': [f'{L.train_dir}/{f}' for f in files],
                                 LABEL: [f.split('.')[0] for f in files]})
        df = pd.read_csv(self.path / L.train_csv, dtype=str, keep_default_na=False)
        if L.label_cols:
            hot = df[L.label_cols].apply(pd.to_numeric, errors='coerce').fillna(0).to_numpy() > 0.5
            df[LABEL] = [' '.join(c for c, h in zip(L.label_cols, row) if h) for row in hot]
        elif L.task == 'multi':
            df[LABEL] = [' '.join(sorted(v.split())) for v in df[L.label_col]]
        else:
            df[LABEL] = df[L.label_col].str.strip() if L.task != 'single' else df[L.label_col]
        files = df[L.id_col] + L.ext
        df['path'] = (L.train_dir + '/' + df[LABEL] + '/' + files) if L.images == 'folders' else (L.train_dir + '/' + files)
        return df

    def pseudo_ids(self):
        """Ids of the pseudo-labelled test images in train.csv (`comp pseudo`); empty for a real competition."""
        import pandas as pd
        f = self.path / self.layout.pseudo_csv
        return set(pd.read_csv(f, dtype=str)[self.layout.id_col]) if f.exists() else set()

    def sample_df(self):
        """sample_submission.csv as strings."""
        import pandas as pd
        return pd.read_csv(self.path / self.layout.sample_csv, dtype=str, keep_default_na=False)

    def vocab(self):
        """The model's outputs in order: the classes (sorted as fastai sorts them; integer codes by value), or
        [VALUE] for a regressed target."""
        L = self.layout
        if L.task in ('regression', 'ordinal'): return [VALUE]
        if L.images == 'folders': return sorted(p.name for p in self.train_path.iterdir() if p.is_dir())
        labels = set(self.train_df()[LABEL])
        if L.task == 'multi': labels = {x for v in labels for x in v.split()}
        return _sorted(labels)

    def test_ids(self):
        """Test image ids in the order of the list that names them (test.csv, else sample_submission)."""
        import pandas as pd
        L = self.layout
        if L.test_csv: return list(pd.read_csv(self.path / L.test_csv, dtype=str, keep_default_na=False)[L.id_col])
        return list(self.sample_df()[L.id_col])

    def test_file(self, i):
        """A test image's path relative to the competition folder."""
        return f'{self.layout.test_dir}/{i}{self.layout.ext}'

    def info(self):
        """What `comp.json` records about this competition."""
        return {'data': str(self.path), 'competition': self.name, 'layout': asdict(self.layout)}

    # The competition's metric, through comp.metrics: `truth` and outputs from a validation frame.
    def fit_decode(self, valid, vocab):
        """Decoding parameters (thresholds) that maximise the metric on a validation frame; {} where none apply."""
        from . import metrics
        if not len(valid): return {}
        return metrics.fit(self.metric, self.task, vocab, list(valid[LABEL]), valid[vocab].to_numpy(),
                           positive=self._positive(vocab), range=self.layout.range or None)

    def score(self, valid, vocab, params=None):
        """The metric of a validation frame (id, label, one column per output), decoded with `params`."""
        from . import metrics
        return metrics.score(self.metric, self.task, vocab, list(valid[LABEL]), valid[vocab].to_numpy(), params=params,
                             positive=self._positive(vocab), range=self.layout.range or None)

    def error(self, valid, vocab, params=None):
        """The metric as an error (lower is better) of a validation frame; thresholds chosen on it unless given."""
        from . import metrics
        if params is None: params = self.fit_decode(valid, vocab)
        return metrics.to_error(self.metric, self.score(valid, vocab, params))

    def decode(self, out, vocab, params=None):
        """Predictions per row (class, labels, grade or number) from outputs (an array n x len(vocab))."""
        from . import metrics
        return metrics.decode(self.task, vocab, out, params, range=self.layout.range or None)

    def _positive(self, vocab):
        return self.layout.positive or (vocab[-1] if len(vocab) == 2 else None)


def _sorted(labels):
    """Class names sorted; integer codes by value (so 10 comes after 9)."""
    labels = list(labels)
    if labels and all(_is_int(v) for v in labels): return sorted(labels, key=int)
    return sorted(labels)


def _is_int(v):
    try: return float(v) == int(float(v))
    except (TypeError, ValueError): return False


def _is_float(v):
    try: float(v); return True
    except (TypeError, ValueError): return False


def load(path, name=PADDY, layout=None, check_images=True):
    """Open the competition at `path`, raising one DataError that lists every problem found."""
    comp = Competition(Path(path).expanduser().resolve(), name, layout or Layout())
    problems = problems_of(comp, check_images=check_images)
    if problems:
        shown = problems[:20] + ([f'... and {len(problems) - 20} more'] if len(problems) > 20 else [])
        raise DataError(f'{comp.path} is not a usable competition folder: ' + '; '.join(shown))
    return comp


def problems_of(comp, check_images=True):
    """Every problem with a competition folder, as messages; empty when it is usable."""
    import pandas as pd
    L, root = comp.layout, comp.path
    if not root.is_dir(): return [f'folder {root} does not exist (run `comp setup` or `comp sample DIR`)']
    problems = []
    for d in dict.fromkeys((L.train_dir, L.test_dir)):
        if not (root / d).is_dir(): problems.append(f'missing folder {d}/')
    for f in (L.train_csv if L.images != 'names' else None, L.sample_csv, L.test_csv or None):
        if f and not (root / f).is_file(): problems.append(f'missing file {f}')
    if problems: return problems

    sample = pd.read_csv(root / L.sample_csv, dtype=str, keep_default_na=False)
    if list(sample.columns) != L.columns:
        problems.append(f'{L.sample_csv} has columns {",".join(sample.columns)}; expected {",".join(L.columns)}')
    elif not len(sample): problems.append(f'{L.sample_csv} has no rows: it must list every test image id')
    if L.test_csv:
        test = pd.read_csv(root / L.test_csv, dtype=str, keep_default_na=False)
        if L.id_col not in test.columns: problems.append(f'{L.test_csv} has no column {L.id_col}')
    if problems: return problems
    problems += _folder_problems(comp) if L.images == 'folders' else _flat_problems(comp)

    ids = pd.Series(comp.test_ids())
    dup = ids[ids.duplicated()]
    where = L.test_csv or L.sample_csv
    if len(dup): problems.append(f'duplicate test ids in {where}: {few(sorted(set(dup)))}')
    test_files = {f.name for f in comp.test_path.iterdir() if f.suffix.lower() in IMAGE_EXTS}
    missing = sorted(set(ids + L.ext) - test_files)
    if missing: problems.append(f'{len(missing)} test ids have no image in {L.test_dir}/: {few(missing)}')
    if check_images and not problems:
        files = [root / p for p in comp.train_df()['path']] + [root / comp.test_file(i) for i in sorted(set(ids))]
        bad = undecodable(sorted(set(files)), root)
        large = [b for b, why in bad if why == 'too large']
        broken = [b for b, why in bad if why != 'too large']
        if broken: problems.append(f'{len(broken)} images cannot be decoded: {few(broken)}')
        if large:
            from PIL import Image
            problems.append(f'{len(large)} images have more pixels than Pillow\'s limit ({Image.MAX_IMAGE_PIXELS:,}) '
                            f'lets comp decode: {few(large)}; shrink them')
    return problems


def _columns_problems(comp, train):
    L = comp.layout
    want = [L.id_col, *(L.label_cols or [L.label_col]), *L.extra_cols]
    if [c for c in want if c not in train.columns]:
        return [f'{L.train_csv} has columns {",".join(train.columns)}; expected {",".join(want)}']
    if not len(train): return [f'{L.train_csv} has no rows']
    return []


def _flat_problems(comp):
    """A flat train folder (or labels in the file names): labels readable for the task, every id an image."""
    L = comp.layout
    if L.images != 'names':
        import pandas as pd
        found = _columns_problems(comp, pd.read_csv(comp.path / L.train_csv, dtype=str, keep_default_na=False))
        if found: return found
    df = comp.train_df()
    if not len(df): return [f'{L.train_dir}/ has no images']
    problems = []
    what = L.train_csv if L.images != 'names' else f'the file names in {L.train_dir}/'
    labels = df[LABEL]
    if L.task in ('regression', 'ordinal'):
        bad = df[L.id_col][~labels.map(_is_float)].tolist()
        if bad: problems.append(f'{len(bad)} {what} rows have a {L.label_col} that is not a number: {few(bad)}')
    elif L.task == 'single':
        bad = df[L.id_col][(labels == '') | (labels.str.strip() != labels)].tolist()
        if bad: problems.append(f'{len(bad)} {what} rows have an empty label or one with spaces around it: {few(bad)}')
    if L.task == 'single' and L.label_cols:
        bad = df[L.id_col][labels.str.contains(' ') | (labels == '')].tolist()
        if bad: problems.append(f'{len(bad)} {L.train_csv} rows have not exactly one of {",".join(L.label_cols)} set: {few(bad)}')
    files = {f.name for f in comp.train_path.iterdir() if f.suffix.lower() in IMAGE_EXTS}
    no_image = [i for i, p in zip(df[L.id_col], df['path']) if p.rsplit('/', 1)[-1] not in files]
    if no_image: problems.append(f'{len(no_image)} {L.train_csv} ids have no image in {L.train_dir}/: {few(no_image)}')
    dup = df[L.id_col][df[L.id_col].duplicated()]
    if len(dup): problems.append(f'duplicate ids in {L.train_csv}: {few(sorted(set(dup)))}')
    return problems


def _folder_problems(comp):
    """A folder per label (Paddy Doctor): the CSV's labels are the folders, each id in its label's folder."""
    import pandas as pd
    L = comp.layout
    train = pd.read_csv(comp.path / L.train_csv, dtype=str, keep_default_na=False)
    problems = _columns_problems(comp, train)
    if problems: return problems
    folders = {p.name: {f.name for f in p.iterdir() if f.suffix.lower() in IMAGE_EXTS}
               for p in comp.train_path.iterdir() if p.is_dir()}
    csv_labels = set(train[L.label_col])
    if '' in csv_labels or any(v.strip() != v for v in csv_labels):
        blank = train[L.id_col][train[L.label_col].str.strip() != train[L.label_col]].tolist()
        blank += train[L.id_col][train[L.label_col] == ''].tolist()
        problems.append(f'{len(set(blank))} {L.train_csv} rows have an empty label or one with spaces around it: '
                        f'{few(sorted(set(blank)))}')
    if csv_labels != set(folders):
        extra, missing = sorted(csv_labels - set(folders)), sorted(set(folders) - csv_labels)
        msg = f'labels in {L.train_csv} differ from the folders in {L.train_dir}/'
        if extra: msg += f' (no folder for: {", ".join(map(_shown, extra))})'
        if missing: msg += f' (no rows for folders: {", ".join(map(_shown, missing))})'
        problems.append(msg)
    where = {i: lbl for lbl, ids in folders.items() for i in ids}
    no_image, misplaced = [], []
    for i, lbl in zip(train[L.id_col] + L.ext, train[L.label_col]):
        if i in folders.get(lbl, ()): continue
        if i in where: misplaced.append(f'{i} (label {lbl}, found in {where[i]}/)')
        else: no_image.append(i)
    if no_image: problems.append(f'{len(no_image)} {L.train_csv} ids have no image: {few(no_image)}')
    if misplaced: problems.append(f'{len(misplaced)} {L.train_csv} ids are in another label folder: {few(misplaced)}')
    dup = train[L.id_col][train[L.id_col].duplicated()]
    if len(dup): problems.append(f'duplicate ids in {L.train_csv}: {few(sorted(set(dup)))}')
    return problems


def _shown(label):
    """A label as messages show it: an empty or space-padded one quoted, so it is not a blank."""
    return repr(label) if not label or label.strip() != label else label


def _decodes(f):
    """True, or why the image cannot be used: 'too large' (over Pillow's pixel limit) or 'undecodable'."""
    import warnings
    from PIL import Image
    try:
        with warnings.catch_warnings():
            warnings.simplefilter('error', Image.DecompressionBombWarning)
            with Image.open(f) as im:
                # Decoding at 1/8 scale reads the whole JPEG stream, so truncation still fails, ~10x faster.
                im.draft('RGB', (max(1, im.width // 8), max(1, im.height // 8)))
                im.load()
        return True
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        return 'too large'
    except Exception:
        return 'undecodable'


def undecodable(files, root):
    """(path relative to `root`, why) of the images that fail to decode; results are cached by size and mtime."""
    sig = hashlib.sha1()
    stats = [os.stat(f) for f in files]
    for f, st in zip(files, stats): sig.update(f'{f}|{st.st_size}|{st.st_mtime_ns}\n'.encode())
    stamp = state_dir() / 'checked' / (sig.hexdigest() + '.ok')
    if stamp.exists(): return []
    with ThreadPoolExecutor(max(2, cpus())) as ex: ok = list(ex.map(_decodes, files))
    bad = [(str(Path(f).relative_to(root)), good) for f, good in zip(files, ok) if good is not True]
    if not bad:
        stamp.parent.mkdir(parents=True, exist_ok=True)
        stamp.touch()
    return bad


STATE_VAR = 'COMP_STATE_DIR'


def state_dir():
    """Where comp keeps what it remembers between commands (which image sets decode): `$COMP_STATE_DIR`,
    else ~/.cache/comp. Not the decode-once cache of a run (comp.cache)."""
    if 'COMP_CACHE' in os.environ: raise DataError(f'COMP_CACHE is now called {STATE_VAR}: rename the variable')
    return Path(os.environ.get(STATE_VAR) or Path.home() / '.cache' / 'comp')


def containing(path, source=None):
    """The competition folder that `path` is in (or is), or None: `source` (a Competition) or any folder above `path`
    that holds a sample submission or a train.csv beside train_images/ (Kaggle's layouts)."""
    path, L = Path(path).expanduser().resolve(), Layout()
    for p in (path, *path.parents):
        if source is not None and p == source.path: return p
        if (p / L.train_csv).is_file() and (p / L.train_dir).is_dir(): return p
        if p.is_dir() and _sample_csv(p): return p
    return None


def check_new_folder(dest, what='', source=None):
    """Where a new competition is written (`comp holdout`, `pseudo`, `sample`): a folder that is absent or empty, and
    not inside a competition, whose own checks (labels against folders) it would break. `what`: the option naming
    it in messages ('--dest'), else the path alone."""
    dest = Path(dest)
    named = f'{what} {dest}' if what else str(dest)
    if dest.exists() and not dest.is_dir(): raise ConfigError(f'{named} is a file: choose a new folder')
    if dest.exists() and any(dest.iterdir()): raise ConfigError(f'{named} is not empty: choose a new folder or delete it first')
    inside = containing(dest, source)
    if inside is not None:
        raise ConfigError(f'{named} is inside the competition {inside}, whose folder holds its own files only: '
                          f'choose a folder outside it, such as {inside.parent / dest.name}')


def check_folders_layout(comp, command):
    """A ConfigError unless `comp` keeps a folder per label with one class per image: what `command` writes anew."""
    L = comp.layout
    if L.images != 'folders' or L.task != 'single':
        raise ConfigError(f'{command} writes competitions in a folder-per-label layout (as Paddy Doctor\'s), and '
                          f'{comp.name} has {TASK_WORDS[L.task]} in a {L.images} layout: not supported for it yet')


def record(comp, workdir='.'):
    """Remember `comp` as the competition of `workdir` (in comp.json)."""
    return write_json(Path(workdir) / WORKSPACE_FILE, comp.info())


def find(data=None, workdir='.', check_images=True):
    """The competition given (a Competition, or its folder as `--data`), else the one recorded in `workdir`;
    a DataError says how to get one."""
    if isinstance(data, Competition): return data
    if data is not None:
        rec = _recorded(workdir)
        same = rec and Path(rec['data']).resolve() == Path(data).expanduser().resolve()
        if same: return load(data, **_kwargs(rec), check_images=check_images)
        try: return load(data, check_images=check_images)   # Paddy Doctor's layout, as comp always read a --data folder
        except DataError:
            if _paddy_like(Path(data).expanduser()): raise
        return describe(data, check_images=check_images)   # another kind: inferred from its files (no API: the usual metric for its labels)
    rec = _recorded(workdir)
    if rec is None:
        raise DataError('no competition here: pass --data PATH, or run `comp sample DIR` '
                        '(synthetic) or `comp setup COMPETITION` (Kaggle) in this folder first')
    return load(rec['data'], **_kwargs(rec), check_images=check_images)


def _paddy_like(root):
    """Whether a folder has Paddy Doctor's shape (train_images/ of label folders beside train.csv), so its problems are
    reported as Paddy's rather than inferred as another kind."""
    d = root / Layout().train_dir
    return (root / Layout().train_csv).is_file() and d.is_dir() and any(p.is_dir() for p in d.iterdir())


def _recorded(workdir):
    f = Path(workdir) / WORKSPACE_FILE
    if not f.exists(): return None
    try: rec = read_json(f)
    except Exception:
        rec = None
    if not isinstance(rec, dict) or not isinstance(rec.get('data'), str):
        raise DataError(f'{f} is damaged (not the JSON record comp writes): delete it, then run `comp sample DIR` '
                        'or `comp setup COMPETITION` here again, or pass --data PATH')
    return rec


def _kwargs(rec):
    lay = rec.get('layout', {})
    unknown = sorted(set(lay) - set(Layout.__dataclass_fields__))
    if unknown:
        raise DataError(f'comp.json: layout has unknown key{"s" * (len(unknown) > 1)} {", ".join(unknown)}: use '
                        f'{", ".join(Layout.__dataclass_fields__)}')
    return {'name': rec.get('competition', PADDY), 'layout': Layout(**lay)}


# --- describing a competition from its files (comp setup, comp sample --like) -------------------------------------
def _sample_csv(root):
    """The sample submission's file name in `root`, or None."""
    found = sorted(f.name for f in root.glob('*.csv') if f.name.lower().replace('_', '').startswith('samplesubmission'))
    return found[0] if found else None


def _image_names(d):
    return {f.name for f in d.iterdir() if f.suffix.lower() in IMAGE_EXTS} if d.is_dir() else set()


def check_settings(metric=None, overrides=()):
    """A ConfigError for a metric or a layout setting comp does not know, before anything is downloaded or written."""
    from . import metrics
    unknown = sorted(set(overrides) - set(Layout.__dataclass_fields__))
    if unknown:
        raise ConfigError(f'--set {unknown[0]}: not a layout setting; use one of {", ".join(Layout.__dataclass_fields__)}')
    if metric is not None: metrics.check(metric)


def describe(path, name=None, metric=None, kaggle_metric=None, check_images=True, **overrides):
    """The competition at `path`, its layout, label kind, submission format and metric inferred from its files (and
    Kaggle's name for its metric), then `overrides` (Layout fields; `metric` the metric key) applied and validated.

    An ambiguous case is one ConfigError naming the choices and the setting that decides."""
    root = Path(path).expanduser().resolve()
    if not root.is_dir(): raise DataError(f'folder {root} does not exist (run `comp setup` or `comp sample DIR`)')
    check_settings(metric, overrides)
    L = _infer(root, metric, kaggle_metric, overrides)
    for k, v in overrides.items(): setattr(L, k, v)
    return load(root, name or root.name, L, check_images=check_images)


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


def _infer(root, metric, kaggle_metric, given):
    import pandas as pd
    from . import metrics
    L = Layout(extra_cols=[], sub_cols=[])
    sample = given.get('sample_csv') or _sample_csv(root)
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
            if _image_names(root / d) or any(_image_names(s) for s in (root / d).iterdir() if s.is_dir()): return d
        return None

    L.train_dir = given.get('train_dir') or image_dir('train') or ''
    L.test_dir = given.get('test_dir') or image_dir('test') or L.train_dir
    if not L.train_dir: raise DataError(f'{root} has no folder of training images (train/, train_images/ or images/): '
                                        'unpack the download, or name it with --set train_dir=FOLDER')
    train_root = root / L.train_dir
    flat = _image_names(train_root)
    sub_dirs = [d for d in train_root.iterdir() if d.is_dir() and _image_names(d)]
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
        ids, files, where = list(sub[L.id_col]), _image_names(root / L.test_dir), L.sample_csv
    else:
        ids, files, where = list(train[L.id_col]), flat | {f for d in sub_dirs for f in _image_names(d)}, L.train_csv
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
        elif all(_is_float(v) for v in labels) and len(labels) > 2:
            ints = all(_is_int(v) for v in labels)
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
    if L.submission == 'prob': L.positive = _sorted(labels)[-1]
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
    if all(_is_int(v) for v in vals): return 'int'
    if all(_is_float(v) and 0 <= float(v) <= 1 for v in vals): return 'prob'
    return 'text'


TASK_WORDS = {'single': 'one class per image', 'multi': 'several labels per image', 'regression': 'a number to regress',
              'ordinal': 'an integer grade'}
SUB_WORDS = {'label': 'a class per row', 'probs': 'one probability per class', 'prob': 'the probability of {positive}',
             'labels': 'space-separated labels', 'grade': 'an integer grade', 'number': 'a number'}


def summary(comp):
    """A few lines saying what comp knows of the competition: images, labels, submission, metric."""
    from . import metrics
    L = comp.layout
    df = comp.train_df()
    where = {'folders': f'{L.train_dir}/<label>/', 'flat': f'{L.train_dir}/', 'names': f'{L.train_dir}/ (label in the file name)'}[L.images]
    if L.ext and L.images != 'names': where += f' (ids + {L.ext})'
    test = f'{L.test_dir}/, ids{f" + {L.ext}" if L.ext else ""} from {L.test_csv or L.sample_csv}'
    vocab = comp.vocab()
    if L.task in ('regression', 'ordinal'):
        what = f'{L.label_col}: {TASK_WORDS[L.task]} from {L.range[0]:g} to {L.range[1]:g}' if L.range else TASK_WORDS[L.task]
    else:
        col = ','.join(L.label_cols) if L.label_cols else L.label_col
        shown = few([f'{v} ({L.names[v]})' if v in L.names else v for v in vocab], 6)
        what = f'{col}: {TASK_WORDS[L.task]}, {len(vocab)} classes ({shown})'
    m = metrics.METRICS[L.metric]
    return [f'images      {len(df)} training in {where}; {len(comp.test_ids())} test in {test}',
            f'labels      {what}',
            f'submission  {",".join(L.columns[:4])}{",..." if len(L.columns) > 4 else ""}: {SUB_WORDS[L.submission].format(positive=L.positive)}',
            f'metric      {L.metric}: {m.title}, {"higher" if m.higher else "lower"} is better (--metric or comp.json to change)']
