"""A competition on disk in Kaggle's layout: paths, csv columns, vocab, test ids; opening one (validated by
comp.checks, described by comp.detect) and finding the one a workspace records."""
from dataclasses import asdict, dataclass, field
from pathlib import Path

from . import checks, detect
from .errors import ConfigError, DataError, few
from .files import read_json, write_json
from .layout import LABEL, SUB_WORDS, TASK_WORDS, VALUE, Layout, image_names, sorted_labels

PADDY = 'paddy-disease-classification'
WORKSPACE_FILE = 'comp.json'


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
            files = sorted(image_names(self.train_path))
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
        return sorted_labels(labels)

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


def load(path, name=PADDY, layout=None, check_images=True):
    """Open the competition at `path`, raising one DataError that lists every problem found."""
    comp = Competition(Path(path).expanduser().resolve(), name, layout or Layout())
    problems = checks.problems_of(comp, check_images=check_images)
    if problems:
        shown = problems[:20] + ([f'... and {len(problems) - 20} more'] if len(problems) > 20 else [])
        raise DataError(f'{comp.path} is not a usable competition folder: ' + '; '.join(shown))
    return comp


def containing(path, source=None):
    """The competition folder that `path` is in (or is), or None: `source` (a Competition) or any folder above `path`
    that holds a sample submission or a train.csv beside train_images/ (Kaggle's layouts)."""
    path, L = Path(path).expanduser().resolve(), Layout()
    for p in (path, *path.parents):
        if source is not None and p == source.path: return p
        if (p / L.train_csv).is_file() and (p / L.train_dir).is_dir(): return p
        if p.is_dir() and detect.sample_csv(p): return p
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


def describe(path, name=None, metric=None, kaggle_metric=None, check_images=True, **overrides):
    """The competition at `path`, its layout, label kind, submission format and metric inferred from its files (and
    Kaggle's name for its metric), then `overrides` (Layout fields; `metric` the metric key) applied and validated.

    An ambiguous case is one ConfigError naming the choices and the setting that decides."""
    root = Path(path).expanduser().resolve()
    if not root.is_dir(): raise DataError(f'folder {root} does not exist (run `comp setup` or `comp sample DIR`)')
    detect.check_settings(metric, overrides)
    L = detect.infer_layout(root, metric, kaggle_metric, overrides)
    for k, v in overrides.items(): setattr(L, k, v)
    return load(root, name or root.name, L, check_images=check_images)


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
