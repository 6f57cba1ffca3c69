"""What is wrong with a competition folder: every problem as a message (missing files, columns, labels that
differ from their folders, ids without images), and the images that cannot be decoded."""
import hashlib
import os
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from .errors import few
from .files import state_dir
from .layout import LABEL, image_names, is_float
from .machine import cpus


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
    test_files = image_names(comp.test_path)
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
        bad = df[L.id_col][~labels.map(is_float)].tolist()
        if bad: problems.append(f'{len(bad)} {what} rows have a {L.label_col} that is not a number: {few(bad)}')
    elif L.task == 'single':
        bad = df[L.id_col][(labels == '') | (labels.str.strip() != labels)].tolist()
        if bad: problems.append(f'{len(bad)} {what} rows have an empty label or one with spaces around it: {few(bad)}')
    if L.task == 'single' and L.label_cols:
        bad = df[L.id_col][labels.str.contains(' ') | (labels == '')].tolist()
        if bad: problems.append(f'{len(bad)} {L.train_csv} rows have not exactly one of {",".join(L.label_cols)} set: {few(bad)}')
    files = image_names(comp.train_path)
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
    folders = {p.name: image_names(p)
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
