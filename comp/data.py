"""DataBlock / DataLoaders factories and the shared validation splits and folds (the cache's policy: comp.cache)."""
import os
from pathlib import Path

from .errors import ConfigError, few
from .machine import cpus
from .files import write_csv

SPLITS_DIR = 'splits'


def split_file(workdir, seed, valid_pct=0.2, folds=None):
    """Where the shared split for these settings is stored in the workspace."""
    name = f'folds{folds}_seed{seed}.csv' if folds else f'valid{valid_pct:g}_seed{seed}.csv'
    return Path(workdir) / SPLITS_DIR / name


def shared_split(comp, workdir='.', seed=42, valid_pct=0.2, folds=None):
    """image_id -> fold table (fold 0 is the validation set without `folds`), computed once and stored.

    Every run with the same settings reads the same file, so all of them validate on the same images
    and can be compared and ensembled."""
    import pandas as pd
    if folds and folds < 2: raise ConfigError(f'--folds {folds} is too few: use 2 or more')
    if not folds and not 0 < valid_pct < 1:
        raise ConfigError(f'--valid-pct {valid_pct}: use a fraction between 0 and 1, or 0 to train on every image')
    f = split_file(workdir, seed, valid_pct, folds)
    L = comp.layout
    df = comp.train_df()
    # Pseudo-labelled images (comp.pseudo) always train: the split is of the real images only, so it is the same
    # split (and the same folds) as the competition's the pseudo-labels were derived from.
    df = df[~df[L.id_col].isin(comp.pseudo_ids())]
    if f.exists():
        split = pd.read_csv(f, dtype={L.id_col: str})
        if set(split[L.id_col]) == set(df[L.id_col]): return split
        raise ConfigError(f'{f} was made for other training images: delete it to make a new split '
                          '(runs made with the old one can no longer be ensembled with new ones)')
    from sklearn.model_selection import StratifiedKFold, train_test_split
    ids, labels = df[L.id_col].to_numpy(), strata(comp, df)
    try:
        if folds:
            fold = pd.Series(0, index=ids)
            for k, (_, va) in enumerate(StratifiedKFold(folds, shuffle=True, random_state=seed).split(ids, labels)):
                fold.iloc[va] = k
        else:
            _, va = train_test_split(ids, test_size=valid_pct, stratify=labels, random_state=seed)
    except ValueError as e:  # sklearn: more folds than images of a label, or fewer validation images than labels
        what = f'--folds {folds}' if folds else f'--valid-pct {valid_pct}'
        raise ConfigError(f'{what} cannot split {len(ids)} images of {len(set(labels))} labels by label '
                          f'({str(e).splitlines()[0]}): use {"fewer folds" if folds else "another fraction"}') from None
    if folds:
        split = pd.DataFrame({L.id_col: ids, 'fold': fold.to_numpy()})
    else:
        va = set(va)
        split = pd.DataFrame({L.id_col: ids, 'fold': [0 if i in va else 1 for i in ids]})
    write_csv(f, split.sort_values(L.id_col))
    return pd.read_csv(f, dtype={L.id_col: str})


def strata(comp, df):
    """What a split is stratified by: the class; for several labels per image their combination (rare ones pooled);
    for a regressed number its quintile."""
    import pandas as pd
    from .competition import LABEL
    y = df[LABEL]
    if comp.task == 'regression':
        return pd.qcut(y.astype(float), 5, labels=False, duplicates='drop').astype(str).to_numpy()
    if comp.task == 'multi':
        y = y.where(y.map(y.value_counts()) >= 10, 'rare')
        if (y == 'rare').sum() < 2: y = y.replace('rare', y.mode()[0])   # a pool of one cannot be split
    return y.to_numpy()


def no_validation(c):
    """Whether a config trains on every training image (--valid-pct 0, e.g. a CV group's refit): no validation set,
    no validation score."""
    return not c.get('folds') and c.get('valid_pct') == 0


NO_VALIDATION = 'trained on every training image (--valid-pct 0): it has no validation score of its own'


def valid_size(n, valid_pct=0.2, folds=None):
    """How many of `n` training images validate (one fold's share with `folds`), as scikit-learn sizes the split."""
    import math
    return math.ceil(n / folds if folds else n * valid_pct)


def valid_ids(comp, workdir='.', seed=42, valid_pct=0.2, folds=None, fold=0):
    """The validation image ids of the shared split (fold `fold` when `folds` is set); none for `valid_pct` 0 (a
    model trained on every image, such as a CV group's refit, which has no validation score of its own)."""
    if folds and folds >= 2 and not 0 <= fold < folds: raise ConfigError(f'--fold {fold} must be between 0 and {folds - 1}')
    if no_validation({'folds': folds, 'valid_pct': valid_pct}): return set()
    split = shared_split(comp, workdir, seed, valid_pct, folds)
    return set(split.loc[split['fold'] == (fold if folds else 0), comp.layout.id_col])


def drop_record(path, comp):
    """What `--drop FILE` records in a run's config: the file, its sha256 and how many training images it lists; a
    ConfigError when it cannot be read, has no id column or lists ids that are not training images."""
    import hashlib
    ids = _listed(path, comp)
    return {'file': str(Path(path).resolve()), 'sha256': hashlib.sha256(Path(path).read_bytes()).hexdigest(),
            'ids': len(ids)}


def drop_ids(record, comp):
    """The ids a run's recorded `drop` lists, read again from its file; a ConfigError when the file changed since (a
    resumed run would train without other images than it started without)."""
    import hashlib
    if not record: return set()
    f = Path(record['file'])
    if not f.is_file() or hashlib.sha256(f.read_bytes()).hexdigest() != record['sha256']:
        raise ConfigError(f'--drop {f} {"is gone" if not f.is_file() else "changed"} since the run recorded it '
                          f'(sha256 {record["sha256"][:12]}...): restore it, or train a new run with the --drop you want now')
    return _listed(f, comp)


def _listed(path, comp):
    """The training-image ids a drop file lists in the competition's id column."""
    import pandas as pd
    id_col, f = comp.layout.id_col, Path(path)
    if not f.is_file(): raise ConfigError(f'--drop {path}: no such file; give a CSV with a column {id_col} (such as '
                                          'the suspects.csv `comp suspects GROUP` writes in the group\'s folder)')
    try: df = pd.read_csv(f, dtype=str, keep_default_na=False)
    except (ValueError, UnicodeDecodeError) as e:   # pandas' EmptyDataError and ParserError are ValueErrors
        raise ConfigError(f'--drop {path} is not a readable CSV ({type(e).__name__}): give a CSV with a column {id_col}') from None
    if id_col not in df.columns:
        raise ConfigError(f'--drop {path} has no column {id_col} (it has {", ".join(map(str, df.columns)) or "none"}): '
                          f'list the images to drop in a column {id_col}, as comp suspects writes it')
    ids = set(df[id_col])
    unknown = sorted(ids - set(comp.train_df()[id_col]))
    if unknown: raise ConfigError(f'--drop {path} lists {len(unknown)} ids that are not training images of {comp.path}: '
                                  f'{few(unknown)}; is it from another competition?')
    return ids


def item_tfms(resize):
    """fastai's item-level Resize for a recipe's ('squish'|'crop'|'pad', (h, w))."""
    from fastai.vision.all import PadMode, Resize, ResizeMethod
    method, size = resize
    methods = {'squish': ResizeMethod.Squish, 'crop': ResizeMethod.Crop, 'pad': ResizeMethod.Pad}   # checked in config
    return Resize(tuple(size), method=methods[method], pad_mode=PadMode.Zeros)


# aug_transforms' strengths as the reference recipe set them (min_scale 0.75, fastai's defaults for the rest).
AUG = {'min_scale': 0.75, 'max_rotate': 10.0, 'max_zoom': 1.1, 'max_lighting': 0.2, 'max_warp': 0.2, 'flip': True}


def aug_options(c):
    """The augmentation strengths of a resolved config."""
    return {k: c[k] for k in AUG}


def batch_tfms(size, min_scale=0.75, flip=True, **kw):
    """fastai's `aug_transforms` at the recipe's batch size, as the reference recipe used them unless told otherwise."""
    from fastai.vision.all import aug_transforms
    return aug_transforms(size=tuple(size), min_scale=min_scale, do_flip=flip, **kw)


def num_workers(requested=None):
    """Data-loading workers: the cores this process may use, unless set."""
    return cpus() if requested is None else requested


def test_items(comp):
    """The test images in sample_submission's order: the id column and `path`, relative to the images' root."""
    import pandas as pd
    ids = comp.test_ids()
    return pd.DataFrame({comp.layout.id_col: ids, 'path': [comp.test_file(i) for i in ids]})


def dataloaders(comp, valid, size, resize, bs=32, targets=('label',), workers=None, seed=42, device=None,
                root=None, cache=True, test=(), aug=None, drop=(), extra=None):
    """DataLoaders from a fastai DataBlock: the images of train.csv, `valid` ids held out, one block per target.

    Images are read from `root` (a pre-resized copy) or the competition folder. With `cache`, and uint8
    copies that fit the budget, each image is decoded once (see comp.cache for crops and pads). `test`
    (paths as in `test_items`) is for prediction: the cache then holds the test and validation images, which
    are all prediction reads, so TTA passes and validation decode each image once too. `drop`: ids left out of
    training; those in `valid` stay there, so every run on the split validates on the same images (`dls.dropped`:
    how many of them were left out, and how many were kept in validation)). `extra`: more training rows (id, label,
    path; a distilled student's test images: comp.distill.test_rows)."""
    from fastai.vision.all import CategoryBlock, ColReader, ColSplitter, DataBlock, ImageBlock
    from .competition import LABEL
    root = str(root or comp.path)
    df = comp.train_df()
    df['is_valid'] = df[comp.layout.id_col].isin(valid)
    listed = df[comp.layout.id_col].isin(drop)
    dropped = {'train': int((listed & ~df['is_valid']).sum()), 'kept_in_valid': int((listed & df['is_valid']).sum())}
    df = df[~(listed & ~df['is_valid'])].reset_index(drop=True)
    if extra is not None and len(extra):
        import pandas as pd
        df = pd.concat([df, extra.assign(is_valid=False)], ignore_index=True)
    cols = list(targets)
    missing = [c for c in cols if c not in df.columns]
    if missing: raise ConfigError(f'train.csv has no column {missing[0]!r} to use as a target')
    # Vocabularies come from all of train.csv, so a value seen only in validation still has a class.
    vocabs = [comp.vocab() if c == LABEL else sorted(df[c].astype(str).unique()) for c in cols]
    blocks = [CategoryBlock(vocab=v) for v in vocabs]
    get_y = [ColReader(c) for c in cols]
    if comp.task == 'multi':
        from fastai.vision.all import MultiCategoryBlock
        blocks[0], get_y[0] = MultiCategoryBlock(vocab=vocabs[0]), ColReader(LABEL, label_delim=' ')
    elif comp.task in ('regression', 'ordinal'):
        from fastai.vision.all import RegressionBlock
        df[LABEL] = df[LABEL].astype('float32')
        blocks[0] = RegressionBlock(n_out=1)
    from . import cache as cache_
    x_block, itfms = ImageBlock, item_tfms(resize)
    where, why = cache_.plan(resize, len(valid) + len(test) if len(test) else len(df), cache)
    if where is not None:
        from fastai.vision.all import IntToFloatTensor, TransformBlock
        from .cache import CachedImage
        paths = [f'{root}{os.sep}{p}' for p in [*df['path'], *test]]
        x_block = TransformBlock(type_tfms=CachedImage(paths, itfms, where),
                                 batch_tfms=IntToFloatTensor)
        itfms = []
    dblock = DataBlock(blocks=(x_block, *blocks), n_inp=1,
                       get_x=ColReader('path', pref=f'{root}{os.sep}'),
                       get_y=get_y if len(cols) > 1 else get_y[0],
                       splitter=ColSplitter('is_valid'),
                       item_tfms=itfms, batch_tfms=batch_tfms(size, **(aug or {})))
    import torch
    kw = {'device': device} if device is not None else {}
    # Pinned host memory lets batches copy to the GPU asynchronously; fastai picks CUDA when there is one.
    pin = str(device).startswith('cuda') if device is not None else torch.cuda.is_available()
    dls = dblock.dataloaders(df, bs=bs, num_workers=num_workers(workers), seed=seed, pin_memory=pin, **kw)
    dls.decode_cache = why  # what `comp train` says and records about the cache
    dls.dropped = dropped
    return dls
