"""A competition on disk in Kaggle's layout: paths, csv columns, vocab, test ids, and its validation."""
import hashlib
import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path

from .errors import ConfigError, DataError
from .machine import cpus
from .files import read_json, write_json

PADDY = 'paddy-disease-classification'
WORKSPACE_FILE = 'comp.json'
IMAGE_EXTS = {'.jpg', '.jpeg', '.png', '.bmp', '.webp', '.tif', '.tiff'}


@dataclass
class Layout:
    """File, folder and column names of a competition; the defaults are Paddy Doctor's."""
    train_dir: str = 'train_images'
    test_dir: str = 'test_images'
    train_csv: str = 'train.csv'
    sample_csv: str = 'sample_submission.csv'
    solution_csv: str = 'solution.csv'
    pseudo_csv: str = 'pseudo.csv'        # `comp pseudo`: which train.csv rows are pseudo-labelled test images
    id_col: str = 'image_id'
    label_col: str = 'label'
    extra_cols: list = field(default_factory=lambda: ['variety', 'age'])


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

    def train_df(self):
        """train.csv with a `path` column: each image's path relative to the competition folder."""
        import pandas as pd
        L = self.layout
        df = pd.read_csv(self.path / L.train_csv, dtype={L.id_col: str, L.label_col: str})
        df['path'] = L.train_dir + '/' + df[L.label_col] + '/' + df[L.id_col]
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
        """Labels in fastai's order (sorted), from the training folders."""
        return sorted(p.name for p in self.train_path.iterdir() if p.is_dir())

    def test_ids(self):
        """Test image ids in sample_submission's order."""
        return list(self.sample_df()[self.layout.id_col])

    def info(self):
        """What `comp.json` records about this competition."""
        return {'data': str(self.path), 'competition': self.name, 'layout': asdict(self.layout)}


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
    for d in (L.train_dir, L.test_dir):
        if not (root / d).is_dir(): problems.append(f'missing folder {d}/')
    for f in (L.train_csv, L.sample_csv):
        if not (root / f).is_file(): problems.append(f'missing file {f}')
    if problems: return problems

    train = pd.read_csv(root / L.train_csv, dtype=str, keep_default_na=False)
    want = [L.id_col, L.label_col, *L.extra_cols]
    if [c for c in want if c not in train.columns]:
        problems.append(f'{L.train_csv} has columns {",".join(train.columns)}; expected {",".join(want)}')
    sample = pd.read_csv(root / L.sample_csv, dtype=str, keep_default_na=False)
    if list(sample.columns) != [L.id_col, L.label_col]:
        problems.append(f'{L.sample_csv} has columns {",".join(sample.columns)}; expected {L.id_col},{L.label_col}')
    elif not len(sample): problems.append(f'{L.sample_csv} has no rows: it must list every test image id')
    if not len(train.columns) or not len(train): problems.append(f'{L.train_csv} has no rows')
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
    for i, lbl in zip(train[L.id_col], train[L.label_col]):
        if i in folders.get(lbl, ()): continue
        if i in where: misplaced.append(f'{i} (label {lbl}, found in {where[i]}/)')
        else: no_image.append(i)
    if no_image: problems.append(f'{len(no_image)} {L.train_csv} ids have no image: {few(no_image)}')
    if misplaced: problems.append(f'{len(misplaced)} {L.train_csv} ids are in another label folder: {few(misplaced)}')
    dup = train[L.id_col][train[L.id_col].duplicated()]
    if len(dup): problems.append(f'duplicate ids in {L.train_csv}: {few(sorted(set(dup)))}')

    ids = sample[L.id_col]
    dup = ids[ids.duplicated()]
    if len(dup): problems.append(f'duplicate test ids in {L.sample_csv}: {few(sorted(set(dup)))}')
    test_files = {f.name for f in comp.test_path.iterdir() if f.suffix.lower() in IMAGE_EXTS}
    missing = sorted(set(ids) - test_files)
    if missing: problems.append(f'{len(missing)} test ids have no image in {L.test_dir}/: {few(missing)}')
    if check_images and not problems:
        files = [comp.train_path / lbl / i for lbl, ids_ in folders.items() for i in sorted(ids_)]
        files += [comp.test_path / f for f in sorted(test_files)]
        bad = undecodable(files, root)
        large = [b for b, why in bad if why == 'too large']
        broken = [b for b, why in bad if why != 'too large']
        if broken: problems.append(f'{len(broken)} images cannot be decoded: {few(broken)}')
        if large:
            from PIL import Image
            problems.append(f'{len(large)} images have more pixels than Pillow\'s limit ({Image.MAX_IMAGE_PIXELS:,}) '
                            f'lets comp decode: {few(large)}; shrink them')
    return problems


def _shown(label):
    """A label as messages show it: an empty or space-padded one quoted, so it is not a blank."""
    return repr(label) if not label or label.strip() != label else label


def few(items, n=5):
    """The first `n` items joined for a message, with how many more there are."""
    items = list(items)
    return ', '.join(map(str, items[:n])) + (f' ... (+{len(items) - n})' if len(items) > n else '')


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
    with a train.csv and train_images/ (Kaggle's layout)."""
    path, L = Path(path).expanduser().resolve(), Layout()
    for p in (path, *path.parents):
        if source is not None and p == source.path: return p
        if (p / L.train_csv).is_file() and (p / L.train_dir).is_dir(): return p
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
        return load(data, **(_kwargs(rec) if same else {}), check_images=check_images)
    rec = _recorded(workdir)
    if rec is None:
        raise DataError('no competition here: pass --data PATH, or run `comp sample DIR` '
                        '(synthetic) or `comp setup COMPETITION` (Kaggle) in this folder first')
    return load(rec['data'], **_kwargs(rec), check_images=check_images)


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
    return {'name': rec.get('competition', PADDY), 'layout': Layout(**rec.get('layout', {}))}
