"""Synthetic competitions in the exact layouts of Kaggle image competitions (Paddy Doctor's by default), for demos,
tests and benchmarks."""
from pathlib import Path
from typing import NamedTuple

from .competition import PADDY
from .draw import MARKS, MOTIFS, draw_leaf, render
from .errors import ConfigError
from .machine import cpus

# Real label counts of Paddy Doctor's train set (its Kaggle data page); the vocab order is sorted.
COUNTS = {'bacterial_leaf_blight': 479, 'bacterial_leaf_streak': 380, 'bacterial_panicle_blight': 337,
          'blast': 1738, 'brown_spot': 965, 'dead_heart': 1442, 'downy_mildew': 620, 'hispa': 1594,
          'normal': 1764, 'tungro': 1088}
LABELS = sorted(COUNTS)
N_TEST = 3469
VARIETIES = {'ADT45': .672, 'KarnatakaPonni': .095, 'Ponni': .080, 'AtchayaPonni': .044, 'Zonal': .047,
             'AndraPonni': .036, 'Onthanel': .014, 'IR20': .011, 'RR': .004, 'Surya': .006}
AGES = [45, 47, 50, 55, 57, 60, 62, 65, 66, 67, 68, 70, 72, 73, 75, 77, 80, 82]
SCALES = {'small': 0.03, 'full': 1.0}
def scale_frac(scale):
    """'small' (tens of images per label), 'full' (the real sizes, such as Paddy Doctor's 10,407/3,469) or a fraction
    of them."""
    if isinstance(scale, str) and scale in SCALES: return SCALES[scale]
    try: frac = float(scale)
    except ValueError: frac = -1
    if not 0 < frac <= 1:
        raise ConfigError(f'--scale {scale!r} is not valid: use small, full, or a fraction such as 0.05')
    return frac


def write_sample(dest, scale='small', seed=42, workers=None, like=None):
    """Write a sample competition in `like`'s Kaggle layout (default Paddy Doctor's) into `dest` (which must be empty
    or absent) and return its path."""
    from .competition import check_new_folder
    from .config import check_seed
    from .files import atomic_dir
    like = like_name(like)
    frac, final = scale_frac(scale), Path(dest)
    check_seed(seed)
    check_new_folder(final)
    with atomic_dir(final) as tmp:
        if like == PADDY: _write(tmp, frac, seed, workers)
        else: _write_like(tmp, like, scale, seed, workers)
    return final


def sample(dest, scale='small', seed=42, workdir='.', like=None):
    """`comp sample`: write a sample competition (in `like`'s layout) into `dest` and record it as `workdir`'s."""
    from . import competition
    path = write_sample(dest, scale=scale, seed=seed, like=like)
    try: competition.record(describe(path, like), workdir)
    except BaseException:   # a sample comp cannot describe is no use, and its folder would block writing it again
        import shutil
        shutil.rmtree(path, ignore_errors=True)
        raise
    return path


def describe(path, like=None, metric=None):
    """The sample at `path`, written in `like`'s layout, as `comp setup` describes that competition: its archives
    unpacked and its metric the competition's own (taken from LIKES, as `--metric` would give it)."""
    from . import competition
    from .kaggle import unpack
    like = like_name(like)
    if like == PADDY: return competition.load(path)   # Paddy's record stays as it always was
    unpack(path)
    return competition.describe(path, name=like, metric=metric or LIKES[like].metric)


def _write(dest, frac, seed, workers):
    import numpy as np
    import pandas as pd
    from .competition import Layout
    from .files import write_csv
    rng = np.random.default_rng(seed)
    counts = {lbl: max(3, round(n * frac)) for lbl, n in COUNTS.items()}
    n_train, n_test = sum(counts.values()), max(10, round(N_TEST * frac))
    train_labels = [lbl for lbl in LABELS for _ in range(counts[lbl])]
    p = np.array([counts[lbl] for lbl in LABELS], float)
    test_labels = list(rng.choice(LABELS, size=n_test, p=p / p.sum()))
    train_ids = [f'{100001 + i}.jpg' for i in rng.permutation(n_train)]
    test_ids = [f'{200001 + i}.jpg' for i in range(n_test)]
    # Paddy has 4 landscape images among 10,407; keep a few at every scale so code meets them.
    landscape = set(rng.choice(n_train, size=min(4, n_train), replace=False).tolist())
    L = Layout()  # Paddy Doctor's names
    jobs = [(dest / L.train_dir / lbl / i, lbl, seed, k, k in landscape)
            for k, (i, lbl) in enumerate(zip(train_ids, train_labels))]
    jobs += [(dest / L.test_dir / i, lbl, seed, n_train + k, False)
             for k, (i, lbl) in enumerate(zip(test_ids, test_labels))]
    for lbl in LABELS: (dest / L.train_dir / lbl).mkdir(parents=True, exist_ok=True)
    (dest / L.test_dir).mkdir(parents=True, exist_ok=True)
    workers = workers or cpus()
    if workers > 1 and len(jobs) > 50:
        from concurrent.futures import ProcessPoolExecutor
        with ProcessPoolExecutor(workers) as ex: list(ex.map(_write_image, jobs, chunksize=32))
    else:
        for j in jobs: _write_image(j)
    v = list(VARIETIES)
    pv = np.array(list(VARIETIES.values())); pv /= pv.sum()
    variety, age = L.extra_cols
    train = pd.DataFrame({L.id_col: train_ids, L.label_col: train_labels,
                          variety: rng.choice(v, size=n_train, p=pv), age: rng.choice(AGES, size=n_train)})
    write_csv(dest / L.train_csv, train.sort_values([L.label_col, L.id_col]))
    write_csv(dest / L.sample_csv, pd.DataFrame({L.id_col: test_ids, L.label_col: ''}))
    write_csv(dest / L.solution_csv, pd.DataFrame({L.id_col: test_ids, L.label_col: test_labels}))


def _write_image(job):
    path, label, seed, k, landscape = job
    draw_leaf(label, seed, k, landscape).save(path, quality=90)


# ---- Samples in the layouts of other Kaggle image competitions (`--like NAME`) -------------------------------------
# Each writes the competition's Kaggle download as ../COMPETITIONS.md describes it (folders, CSV names and columns, id
# formats, zips), small images whose classes show learnable shapes, and `solution.csv`: the hidden answers in the
# sample submission's own columns. Paddy Doctor stays the code above, byte for byte.

DOG_BREEDS = sorted('''affenpinscher afghan_hound african_hunting_dog airedale american_staffordshire_terrier appenzeller
    australian_terrier basenji basset beagle bedlington_terrier bernese_mountain_dog black-and-tan_coonhound
    blenheim_spaniel bloodhound bluetick border_collie border_terrier borzoi boston_bull bouvier_des_flandres boxer
    brabancon_griffon briard brittany_spaniel bull_mastiff cairn cardigan chesapeake_bay_retriever chihuahua chow clumber
    cocker_spaniel collie curly-coated_retriever dandie_dinmont dhole dingo doberman english_foxhound english_setter
    english_springer entlebucher eskimo_dog flat-coated_retriever french_bulldog german_shepherd
    german_short-haired_pointer giant_schnauzer golden_retriever gordon_setter great_dane great_pyrenees
    greater_swiss_mountain_dog groenendael ibizan_hound irish_setter irish_terrier irish_water_spaniel irish_wolfhound
    italian_greyhound japanese_spaniel keeshond kelpie kerry_blue_terrier komondor kuvasz labrador_retriever
    lakeland_terrier leonberg lhasa malamute malinois maltese_dog mexican_hairless miniature_pinscher miniature_poodle
    miniature_schnauzer newfoundland norfolk_terrier norwegian_elkhound norwich_terrier old_english_sheepdog otterhound
    papillon pekinese pembroke pomeranian pug redbone rhodesian_ridgeback rottweiler saint_bernard saluki samoyed
    schipperke scotch_terrier scottish_deerhound sealyham_terrier shetland_sheepdog shih-tzu siberian_husky silky_terrier
    soft-coated_wheaten_terrier staffordshire_bullterrier standard_poodle standard_schnauzer sussex_spaniel
    tibetan_mastiff tibetan_terrier toy_poodle toy_terrier vizsla walker_hound weimaraner welsh_springer_spaniel
    west_highland_white_terrier whippet wire-haired_fox_terrier yorkshire_terrier'''.split())
# The breeds a small sample keeps (hyphenated names among them), then the rest: a fraction keeps the first ones.
FEW_BREEDS = ['beagle', 'black-and-tan_coonhound', 'border_collie', 'golden_retriever', 'pug', 'samoyed', 'shih-tzu',
              'siberian_husky']
BREED_ORDER = FEW_BREEDS + [b for b in DOG_BREEDS if b not in FEW_BREEDS]
CASSAVA_NAMES = {'0': 'Cassava Bacterial Blight (CBB)', '1': 'Cassava Brown Streak Disease (CBSD)',
                 '2': 'Cassava Green Mottle (CGM)', '3': 'Cassava Mosaic Disease (CMD)', '4': 'Healthy'}
PET_FLAGS = {'Subject Focus': .03, 'Eyes': .77, 'Face': .90, 'Near': .86, 'Action': .01, 'Accessory': .07,
             'Group': .13, 'Collage': .05, 'Human': .17, 'Occlusion': .17, 'Info': .06, 'Blur': .07}  # share of 1s


class Like(NamedTuple):
    """What a sample of one competition holds: its kind in a few words (for help texts); the competition's metric (a
    key of comp.metrics.METRICS: a sample has no Kaggle API to name it, so it is given as `--metric` would give it);
    the real train counts per class (per label set for several labels) and the test size Kaggle has, public or
    hidden; the 'small' ones."""
    kind: str
    metric: str
    counts: dict
    n_test: int
    small: dict = None
    small_test: int = 40


# The class counts are from the competitions' data pages, unverified beyond COMPETITIONS.md's totals. Plant
# Pathology 2021's one 3-label set is folded into 'scab frog_eye_leaf_spot', so an image has 1 or 2 labels.
LIKES = {
    PADDY: Like('the default: a folder per label, class names', 'accuracy', COUNTS, N_TEST),
    'cassava-leaf-disease-classification': Like(
        'flat, int labels 0-4 with a JSON map of names, mostly 3', 'accuracy',
        {'0': 1087, '1': 2189, '2': 2386, '3': 13158, '4': 2577}, 15000, {'0': 15, '1': 20, '2': 20, '3': 45, '4': 20}),
    'dog-breed-identification': Like(
        'flat, ids without extension, a probability column per breed', 'log_loss',
        {b: 85 + (k < 22) for k, b in enumerate(BREED_ORDER)}, 10357, {b: 20 for b in FEW_BREEDS}),
    'dogs-vs-cats-redux-kernels-edition': Like(
        'labels in the file names as cat.N.jpg, zips and folders, the probability of dog', 'log_loss',
        {'cat': 12500, 'dog': 12500}, 12500, {'cat': 40, 'dog': 40}),
    'aerial-cactus-identification': Like(
        '32x32, in zips only, has_cactus 0/1, a probability', 'auc', {'0': 4364, '1': 13136}, 4000, {'0': 20, '1': 40}),
    'plant-pathology-2020-fgvc7': Like(
        'one folder for train and test, one-hot columns', 'mean_auc',
        {'healthy': 516, 'multiple_diseases': 91, 'rust': 622, 'scab': 592}, 1821,
        {'healthy': 25, 'multiple_diseases': 15, 'rust': 30, 'scab': 30}),
    'plant-pathology-2021-fgvc8': Like(
        'space-separated labels, several per image', 'f1_micro',
        {'healthy': 4624, 'scab': 4826, 'frog_eye_leaf_spot': 3181, 'rust': 1860, 'complex': 1602, 'powdery_mildew': 1184,
         'scab frog_eye_leaf_spot': 886, 'frog_eye_leaf_spot complex': 165, 'rust frog_eye_leaf_spot': 120,
         'rust complex': 97, 'powdery_mildew complex': 87}, 5000,
        {'healthy': 20, 'scab': 20, 'frog_eye_leaf_spot': 16, 'rust': 15, 'complex': 15, 'powdery_mildew': 15,
         'scab frog_eye_leaf_spot': 6, 'frog_eye_leaf_spot complex': 4, 'rust frog_eye_leaf_spot': 4, 'rust complex': 4,
         'powdery_mildew complex': 4}),
    'aptos2019-blindness-detection': Like(
        'PNG, an ordinal grade 0-4', 'qwk', {'0': 1805, '1': 370, '2': 999, '3': 193, '4': 295}, 1928,
        {'0': 40, '1': 15, '2': 25, '3': 15, '4': 15}),
    'petfinder-pawpularity-score': Like('a number 1-100 to regress, metadata columns', 'rmse', {'': 9912}, 6800, {'': 120}),  # no classes
}
MIN_BREEDS = 8
def like_name(like=None):
    """The competition a sample copies: `like` checked (None means Paddy Doctor)."""
    if like is None: return PADDY
    if like not in LIKES:
        raise ConfigError(f'--like {like!r} is not a competition comp can write a sample of: use one of '
                          f'{", ".join(LIKES)}')
    return like


def _sizes(like, scale):
    """(train count per class or label set, test size) of a `like` sample at `scale`."""
    real, n_test = LIKES[like].counts, LIKES[like].n_test
    if scale == 'small': return dict(LIKES[like].small), LIKES[like].small_test
    frac = scale_frac(scale)
    if like == 'dog-breed-identification':   # fewer breeds too, so a fraction stays quick
        real = {b: real[b] for b in BREED_ORDER[:max(MIN_BREEDS, round(len(real) * frac))]}
    least = max(5, -(-20 // len(real)))   # 5 images per class (a 20% split by label then holds one of each), 20 in all
    return {c: max(least, round(n * frac)) for c, n in real.items()}, max(20, round(n_test * frac))


def _write_like(dest, like, scale, seed, workers):
    import numpy as np
    counts, n_test = _sizes(like, scale)
    rng = np.random.default_rng(seed)
    train = [c for c, n in counts.items() for _ in range(n)]
    train = [train[i] for i in rng.permutation(len(train))]
    # Test labels in train's proportions, each class at least once so that every per-class metric (AUC) is defined.
    p = np.array(list(counts.values()), float)
    test = list(counts) + [list(counts)[i] for i in rng.choice(len(counts), size=n_test - len(counts), p=p / p.sum())]
    test = [test[i] for i in rng.permutation(len(test))]
    WRITERS[like](dest, rng, train, test, lambda jobs: render(jobs, seed, workers))


def _hex_ids(rng, n, nbytes):
    ids = set()
    while len(ids) < n: ids |= {bytes(b).hex() for b in rng.integers(0, 256, (n - len(ids), nbytes), dtype='uint8')}
    return [str(i) for i in rng.permutation(sorted(ids))]


def _int_ids(rng, n):
    ids = set()
    while len(ids) < n: ids |= set(rng.integers(10 ** 6, 2 ** 32, n - len(ids)).tolist())
    return [str(i) for i in rng.permutation(sorted(ids))]


def _frames(id_col, ids, cols):
    """A DataFrame of `ids` in column `id_col` plus `cols` ({name: values}), sorted by id."""
    import pandas as pd
    return pd.DataFrame({id_col: ids, **cols}).sort_values(id_col, kind='stable')


def _submission(dest, id_col, ids, sample, solution):
    """sample_submission.csv and solution.csv: the same ids (sorted) and columns, the sample's values and the answers."""
    import pandas as pd
    from .files import write_csv
    order = sorted(range(len(ids)), key=lambda i: ids[i])
    pick = lambda v: [v[i] for i in order] if isinstance(v, list) else v
    for name, cols in (('sample_submission.csv', sample), ('solution.csv', solution)):
        write_csv(dest / name, pd.DataFrame({id_col: pick(ids), **{c: pick(v) for c, v in cols.items()}}))


def _files(dest, names, blobs):
    for name, blob in zip(names, blobs):
        (dest / name).parent.mkdir(parents=True, exist_ok=True)
        (dest / name).write_bytes(blob)


def _zip(path, names, blobs):
    """A zip of the files (stored: JPEGs do not shrink), with a fixed date so a seed writes the same bytes."""
    import zipfile
    with zipfile.ZipFile(path, 'w', zipfile.ZIP_STORED) as z:
        for name, blob in sorted(zip(names, blobs)): z.writestr(zipfile.ZipInfo(name, (1980, 1, 1, 0, 0, 0)), blob)


def _cassava(dest, rng, train, test, render):
    import json
    from .files import write_csv
    ids = [f'{i}.jpg' for i in _int_ids(rng, len(train) + len(test))]
    tr, te = ids[:len(train)], ids[len(train):]
    blobs = render([('leaf', _leaf_marks(['squares', 'streaks', 'blotch', 'spots', None], c)) for c in train + test])
    _files(dest, [f'train_images/{i}' for i in tr] + [f'test_images/{i}' for i in te], blobs)
    write_csv(dest / 'train.csv', _frames('image_id', tr, {'label': train}))
    (dest / 'label_num_to_disease_map.json').write_text(json.dumps(CASSAVA_NAMES))
    _submission(dest, 'image_id', te, {'label': 4}, {'label': test})


def _dog_breeds(dest, rng, train, test, render):
    from .files import write_csv
    ids = _hex_ids(rng, len(train) + len(test), 16)
    tr, te = ids[:len(train)], ids[len(train):]
    breeds = sorted(set(train))
    blobs = render([('photo', (MOTIFS[BREED_ORDER.index(b) % len(MOTIFS)],
                               MARKS[BREED_ORDER.index(b) // len(MOTIFS)])) for b in train + test])
    _files(dest, [f'train/{i}.jpg' for i in tr] + [f'test/{i}.jpg' for i in te], blobs)
    write_csv(dest / 'labels.csv', _frames('id', tr, {'breed': train}))
    _submission(dest, 'id', te, {b: 1 / len(breeds) for b in breeds},
                {b: [int(t == b) for t in test] for b in breeds})


def _dogs_vs_cats(dest, rng, train, test, render):
    seen = {'cat': 0, 'dog': 0}
    names = []
    for c in train:
        names.append(f'train/{c}.{seen[c]}.jpg')
        seen[c] += 1
    names += [f'test/{i}.jpg' for i in range(1, len(test) + 1)]
    blobs = render([('photo', ({'cat': 'triangles', 'dog': 'rings'}[c], None)) for c in train + test])
    _files(dest, names, blobs)   # MLE-bench's copy holds the extracted folders beside the zips
    _zip(dest / 'train.zip', names[:len(train)], blobs[:len(train)])
    _zip(dest / 'test.zip', names[len(train):], blobs[len(train):])
    _submission(dest, 'id', list(range(1, len(test) + 1)), {'label': 0.5}, {'label': [int(c == 'dog') for c in test]})


def _cactus(dest, rng, train, test, render):
    from .files import write_csv
    ids = [f'{i}.jpg' for i in _hex_ids(rng, len(train) + len(test), 16)]
    tr, te = ids[:len(train)], ids[len(train):]
    blobs = render([('cactus', c == '1') for c in train + test])
    _zip(dest / 'train.zip', [f'train/{i}' for i in tr], blobs[:len(train)])   # zips only, no folders (as MLE-bench)
    _zip(dest / 'test.zip', [f'test/{i}' for i in te], blobs[len(train):])
    write_csv(dest / 'train.csv', _frames('id', tr, {'has_cactus': [int(c) for c in train]}))
    _submission(dest, 'id', te, {'has_cactus': 0.5}, {'has_cactus': [int(c) for c in test]})


def _plant2020(dest, rng, train, test, render):
    import pandas as pd
    from .files import write_csv
    cols = ['healthy', 'multiple_diseases', 'rust', 'scab']
    tr, te = [f'Train_{i}' for i in range(len(train))], [f'Test_{i}' for i in range(len(test))]
    blobs = render([('leaf', _leaf_marks([None, 'crosses', 'spots', 'scratches'], str(cols.index(c))))
                    for c in train + test])
    _files(dest, [f'images/{i}.jpg' for i in tr + te], blobs)
    write_csv(dest / 'train.csv', pd.DataFrame({'image_id': tr, **{c: [int(t == c) for t in train] for c in cols}}))
    write_csv(dest / 'test.csv', pd.DataFrame({'image_id': te}))
    _submission(dest, 'image_id', te, {c: 0.25 for c in cols}, {c: [int(t == c) for t in test] for c in cols})


def _plant2021(dest, rng, train, test, render):
    from .files import write_csv
    ids = [f'{i}.jpg' for i in _hex_ids(rng, len(train) + len(test), 8)]
    tr, te = ids[:len(train)], ids[len(train):]
    motif = {'healthy': None, 'scab': 'scratches', 'frog_eye_leaf_spot': 'rings', 'rust': 'spots', 'complex': 'bands',
             'powdery_mildew': 'blotch'}
    blobs = render([('leaf', tuple(m for m in map(motif.get, c.split()) if m)) for c in train + test])
    _files(dest, [f'train_images/{i}' for i in tr] + [f'test_images/{i}' for i in te], blobs)
    write_csv(dest / 'train.csv', _frames('image', tr, {'labels': train}))
    _submission(dest, 'image', te, {'labels': 'healthy'}, {'labels': test})


def _aptos(dest, rng, train, test, render):
    import numpy as np
    from .files import write_csv
    ids = _hex_ids(rng, len(train) + len(test), 6)
    tr, te = ids[:len(train)], ids[len(train):]
    drawn = [int(c) for c in train + test]
    blobs = render([('fundus', g) for g in drawn])
    _files(dest, [f'train_images/{i}.png' for i in tr] + [f'test_images/{i}.png' for i in te], blobs)
    # Graders disagree: one grade in seven is a neighbour of the one drawn.
    shift = rng.choice([-1, 0, 1], size=len(drawn), p=[.07, .86, .07])
    grade = np.clip(np.array(drawn) + shift, 0, 4).tolist()
    write_csv(dest / 'train.csv', _frames('id_code', tr, {'diagnosis': grade[:len(train)]}))
    write_csv(dest / 'test.csv', _frames('id_code', te, {}))
    _submission(dest, 'id_code', te, {'diagnosis': 0}, {'diagnosis': grade[len(train):]})


def _petfinder(dest, rng, train, test, render):
    import numpy as np
    from .files import write_csv
    n = len(train) + len(test)
    ids = _hex_ids(rng, n, 16)
    tr, te = ids[:len(train)], ids[len(train):]
    # Pawpularity: skewed like the real one (mean ~38, sd ~20, a few 100s); the image's brightness follows it, noisily.
    score = np.clip(np.round(rng.gamma(3.4, 11, n)), 1, 100).astype(int)
    score[rng.random(n) < .03] = 100
    seen = score + rng.normal(0, 12, n)
    blobs = render([('pet', float(v)) for v in seen])
    _files(dest, [f'train/{i}.jpg' for i in tr] + [f'test/{i}.jpg' for i in te], blobs)
    flags = {f: (rng.random(n) < p).astype(int) for f, p in PET_FLAGS.items()}
    write_csv(dest / 'train.csv', _frames('Id', tr, {**{f: v[:len(train)] for f, v in flags.items()},
                                                     'Pawpularity': score[:len(train)]}))
    write_csv(dest / 'test.csv', _frames('Id', te, {f: v[len(train):] for f, v in flags.items()}))
    _submission(dest, 'Id', te, {'Pawpularity': np.round(rng.uniform(1, 100, len(te)), 2).tolist()},
                {'Pawpularity': score[len(train):].tolist()})


WRITERS = {'cassava-leaf-disease-classification': _cassava, 'dog-breed-identification': _dog_breeds,
           'dogs-vs-cats-redux-kernels-edition': _dogs_vs_cats, 'aerial-cactus-identification': _cactus,
           'plant-pathology-2020-fgvc7': _plant2020, 'plant-pathology-2021-fgvc8': _plant2021,
           'aptos2019-blindness-detection': _aptos, 'petfinder-pawpularity-score': _petfinder}


def _leaf_marks(motifs, code):
    """The motifs of class `code` ('0'..): the class's own one, none where it is None (healthy)."""
    m = motifs[int(code)]
    return (m,) if m else ()
