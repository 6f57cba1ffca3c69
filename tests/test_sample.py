"""The sample competition: Paddy Doctor's layout and proportions, deterministic per seed, labels not given away by colour."""
import hashlib

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from comp import competition
from comp.draw import draw_leaf
from comp.sample import COUNTS, LABELS, VARIETIES, AGES, write_sample
from conftest import comp_cli, ended_pid, one_line, snapshot


def test_layout_matches_paddy(tiny_sample):
    root = tiny_sample
    assert sorted(p.name for p in (root / 'train_images').iterdir()) == sorted(COUNTS)
    train = pd.read_csv(root / 'train.csv', dtype=str)
    assert list(train.columns) == ['image_id', 'label', 'variety', 'age']
    sub = pd.read_csv(root / 'sample_submission.csv', dtype=str)
    assert list(sub.columns) == ['image_id', 'label']
    assert sub['image_id'].iloc[0] == '200001.jpg'
    assert list(sub['image_id']) == [f'{200001 + i}.jpg' for i in range(len(sub))]
    assert sorted(f.name for f in (root / 'test_images').iterdir()) == sorted(sub['image_id'])
    for i, lbl in zip(train['image_id'], train['label']):
        assert (root / 'train_images' / lbl / i).is_file()
    sol = pd.read_csv(root / 'solution.csv', dtype=str)
    assert list(sol['image_id']) == list(sub['image_id']) and set(sol['label']) <= set(LABELS)
    assert set(train['variety']) <= set(VARIETIES) and set(train['age'].astype(int)) <= set(AGES)
    competition.load(root)  # the validator accepts it


def test_counts_are_proportional_to_paddy(small_sample):
    counts = pd.read_csv(small_sample / 'train.csv')['label'].value_counts()
    real = pd.Series(COUNTS)
    frac = counts / real
    assert frac.max() / frac.min() < 1.3, frac
    assert 10 <= counts.min() and counts.max() <= 99  # tens per label by default


def test_images_are_portrait_jpegs_with_a_few_landscape(small_sample):
    sizes = [Image.open(f).size for f in (small_sample / 'train_images').rglob('*.jpg')]
    assert sizes.count((480, 640)) == len(sizes) - 4 and sizes.count((640, 480)) == 4
    kb = [f.stat().st_size / 1024 for f in (small_sample / 'test_images').glob('*.jpg')]
    assert 10 < np.median(kb) < 100  # tens of KB, like the real photos at quality ~90


def test_same_seed_same_files_other_seed_other_files(tmp_path):
    a = write_sample(tmp_path / 'a', scale=0.005, seed=7)
    b = write_sample(tmp_path / 'b', scale=0.005, seed=7)
    c = write_sample(tmp_path / 'c', scale=0.005, seed=8)
    digest = lambda root: {str(f.relative_to(root)): hashlib.md5(f.read_bytes()).hexdigest()
                           for f in sorted(root.rglob('*')) if f.is_file()}
    assert digest(a) == digest(b)
    assert digest(a) != digest(c)


def test_normal_has_no_lesions_and_other_labels_do():
    # Pixels far from the leaf's greens are lesions: none on 'normal', some on every other label.
    def off_green(label):
        x = np.asarray(draw_leaf(label, seed=3, k=1)).astype(float)
        return ((x[..., 0] > x[..., 1] + 10) | (x.min(-1) > 150)).mean()
    assert off_green('normal') < 0.002
    for lbl in LABELS:
        if lbl != 'normal': assert off_green(lbl) > 0.004, lbl


def test_mean_colour_does_not_give_the_label_away(small_sample):
    # A nearest-centroid classifier on mean RGB, trained on half the images, should be near chance.
    train = pd.read_csv(small_sample / 'train.csv')
    feats = np.stack([np.asarray(Image.open(small_sample / 'train_images' / l / i).reduce(8)).reshape(-1, 3).mean(0)
                      for i, l in zip(train['image_id'], train['label'])])
    y = train['label'].to_numpy()
    rng = np.random.default_rng(0)
    idx = rng.permutation(len(y))
    tr, te = idx[: len(y) // 2], idx[len(y) // 2:]
    cents = {l: feats[tr][y[tr] == l].mean(0) for l in LABELS}
    pred = [min(cents, key=lambda l: np.linalg.norm(f - cents[l])) for f in feats[te]]
    acc = (np.array(pred) == y[te]).mean()
    assert acc < 0.35, acc


def test_a_killed_sample_leaves_nothing_behind_for_long(tmp_path):
    left = tmp_path / f'.paddy.{ended_pid()}.abc'
    (left / 'train_images').mkdir(parents=True)  # what a killed `comp sample paddy` left
    r = comp_cli('sample', 'paddy', '--scale', '0.005', cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert not left.exists() and sorted(p.name for p in tmp_path.iterdir()) == ['comp.json', 'paddy']


def test_two_commands_writing_one_folder_keep_the_first_ones_files(tmp_path):
    # Both saw the folder absent or empty; the one that finishes second must neither merge into nor replace it.
    from comp.errors import CompError
    from comp.files import atomic_dir
    dest = tmp_path / 'paddy'
    with pytest.raises(CompError, match='written by another command meanwhile') as e:
        with atomic_dir(dest) as tmp:
            (tmp / 'train.csv').write_text('the second command\'s\n')
            write_sample(dest, scale=0.005, seed=1)   # the other command, finished first
    assert str(e.value).count('\n') == 0 and str(dest) in str(e.value)
    competition.load(dest)   # the first one's competition, whole
    assert 'second' not in (dest / 'train.csv').read_text() and [p.name for p in tmp_path.iterdir()] == ['paddy']


def test_a_sample_inside_a_competition_is_refused(tiny_copy, tmp_path):
    before = snapshot(tiny_copy)
    one_line(comp_cli('sample', tiny_copy / 'train_images' / 'more', '--scale', '0.005', cwd=tmp_path),
             'inside the competition', 'choose a folder outside it')
    assert snapshot(tiny_copy) == before and not (tmp_path / 'comp.json').exists()


# ---- `--like NAME`: the layouts of other Kaggle image competitions -------------------------------------------------
# The facts below are ../shared/COMPETITIONS.md's, written out here (not read from comp.sample): the top of the Kaggle
# download (plus the hidden solution.csv), the label CSV and its columns, the sample submission's columns and values,
# where an id's image is, and what an id looks like.
PET_COLS = ['Id', 'Subject Focus', 'Eyes', 'Face', 'Near', 'Action', 'Accessory', 'Group', 'Collage', 'Human',
            'Occlusion', 'Info', 'Blur', 'Pawpularity']
PP2021 = {'healthy', 'scab', 'frog_eye_leaf_spot', 'rust', 'complex', 'powdery_mildew'}
KAGGLE = {
    'cassava-leaf-disease-classification': dict(
        top={'train_images', 'test_images', 'train.csv', 'sample_submission.csv', 'label_num_to_disease_map.json'},
        labels=('train.csv', ['image_id', 'label']), sub=['image_id', 'label'], fill={'label': '4'},
        train='train_images/{}', test='test_images/{}', id=r'\d+\.jpg', answers='code'),
    'dog-breed-identification': dict(
        top={'train', 'test', 'labels.csv', 'sample_submission.csv'},
        labels=('labels.csv', ['id', 'breed']), sub=None, fill=None,
        train='train/{}.jpg', test='test/{}.jpg', id=r'[0-9a-f]{32}', answers='one-hot'),
    'dogs-vs-cats-redux-kernels-edition': dict(
        top={'train.zip', 'test.zip', 'train', 'test', 'sample_submission.csv'},
        labels=None, sub=['id', 'label'], fill={'label': '0.5'},
        train=None, test='test/{}.jpg', id=r'[1-9]\d*', answers='0/1'),
    'aerial-cactus-identification': dict(
        top={'train.zip', 'test.zip', 'train.csv', 'sample_submission.csv'},
        labels=('train.csv', ['id', 'has_cactus']), sub=['id', 'has_cactus'], fill={'has_cactus': '0.5'},
        train='train.zip:train/{}', test='test.zip:test/{}', id=r'[0-9a-f]{32}\.jpg', answers='0/1'),
    'plant-pathology-2020-fgvc7': dict(
        top={'images', 'train.csv', 'test.csv', 'sample_submission.csv'},
        labels=('train.csv', ['image_id', 'healthy', 'multiple_diseases', 'rust', 'scab']),
        sub=['image_id', 'healthy', 'multiple_diseases', 'rust', 'scab'],
        fill={c: '0.25' for c in ['healthy', 'multiple_diseases', 'rust', 'scab']},
        train='images/{}.jpg', test='images/{}.jpg', id=r'(Train|Test)_\d+', answers='one-hot'),
    'plant-pathology-2021-fgvc8': dict(
        top={'train_images', 'test_images', 'train.csv', 'sample_submission.csv'},
        labels=('train.csv', ['image', 'labels']), sub=['image', 'labels'], fill={'labels': 'healthy'},
        train='train_images/{}', test='test_images/{}', id=r'[0-9a-f]+\.jpg', answers='labels'),
    'aptos2019-blindness-detection': dict(
        top={'train_images', 'test_images', 'train.csv', 'test.csv', 'sample_submission.csv'},
        labels=('train.csv', ['id_code', 'diagnosis']), sub=['id_code', 'diagnosis'], fill={'diagnosis': '0'},
        train='train_images/{}.png', test='test_images/{}.png', id=r'[0-9a-f]{12}', answers='grade'),
    'petfinder-pawpularity-score': dict(
        top={'train', 'test', 'train.csv', 'test.csv', 'sample_submission.csv'},
        labels=('train.csv', PET_COLS), sub=['Id', 'Pawpularity'], fill=None,
        train='train/{}.jpg', test='test/{}.jpg', id=r'[0-9a-f]{32}', answers='number'),
}


def _image(root, where, i):
    """The bytes of image `i` at `where` ('folder/{}.ext', or 'x.zip:folder/{}' inside a zip)."""
    import zipfile
    if ':' in where:
        zf, name = where.split(':')
        with zipfile.ZipFile(root / zf) as z: return z.read(name.format(i))
    return (root / where.format(i)).read_bytes()


@pytest.mark.parametrize('name', list(KAGGLE))
def test_a_like_sample_has_the_competitions_kaggle_layout(tmp_path, name):
    import io
    import re
    import zipfile
    f = KAGGLE[name]
    root = write_sample(tmp_path / 'c', scale=0.001, seed=3, like=name)
    assert {p.name for p in root.iterdir()} == f['top'] | {'solution.csv'}
    read = lambda n: pd.read_csv(root / n, dtype=str, keep_default_na=False)
    sub, sol = read('sample_submission.csv'), read('solution.csv')
    if f['labels']:
        train = read(f['labels'][0])
        assert list(train.columns) == f['labels'][1]
        train_ids = list(train[f['labels'][1][0]])
    else:   # dogs vs cats: the label is in the file name, and the zip holds the folder's files
        files = sorted(p.name for p in (root / 'train').iterdir())
        assert all(re.fullmatch(r'(cat|dog)\.\d+\.jpg', n) for n in files) and {n[:3] for n in files} == {'cat', 'dog'}
        for part in ('train', 'test'):
            with zipfile.ZipFile(root / f'{part}.zip') as z:
                assert sorted(z.namelist()) == sorted(f'{part}/{p.name}' for p in (root / part).iterdir())
                assert all(z.read(n) == (root / n).read_bytes() for n in z.namelist())
        train_ids = []
    sub_cols = f['sub'] or ['id', *sorted(set(train['breed']))]   # dog breeds: a probability column per breed
    assert list(sub.columns) == sub_cols and list(sol.columns) == sub_cols
    id_col = sub_cols[0]
    assert list(sol[id_col]) == list(sub[id_col]) and len(sub) >= 20 and not sub[id_col].duplicated().any()
    for i in train_ids + list(sub[id_col]): assert re.fullmatch(f['id'], i), i
    fill = f['fill'] or ({c: str(1 / (len(sub_cols) - 1)) for c in sub_cols[1:]} if name.startswith('dog-') else {})
    for c, v in fill.items(): assert set(sub[c]) == {v}, c
    if name.startswith('petfinder'):   # random values from 1 to 100
        assert sub['Pawpularity'].astype(float).between(1, 100).all() and sub['Pawpularity'].nunique() > 1
    if 'test.csv' in f['top']:
        test = read('test.csv')
        assert list(test.columns) == [c for c in f['labels'][1] if c not in ('diagnosis', 'Pawpularity', *sub_cols[1:])]
        assert sorted(test[id_col]) == sorted(sub[id_col])
    if name.startswith('plant-pathology-2020'):
        assert all(i.startswith('Train_') for i in train_ids) and all(i.startswith('Test_') for i in sub[id_col])
    # Every train id and every sample id has its image, in the real format and size.
    fmt = 'PNG' if name.startswith('aptos') else 'JPEG'
    tests = [_image(root, f['test'], i) for i in sub[id_col]]
    trains = [_image(root, f['train'], i) for i in train_ids] or [(root / 'train' / n).read_bytes() for n in files]
    for blob in trains + tests:
        im = Image.open(io.BytesIO(blob))
        assert im.format == fmt and (im.size == (32, 32) if name.startswith('aerial') else 32 <= min(im.size) <= 128)
    # The answers, in the submission's format.
    vals = sol[sub_cols[1:]]
    kind = f['answers']
    if kind == 'one-hot': assert (vals.astype(int).isin([0, 1]).all().all() and (vals.astype(int).sum(1) == 1).all())
    if kind == '0/1': assert set(vals.iloc[:, 0]) == {'0', '1'}
    if kind == 'code': assert set(vals.iloc[:, 0]) <= set('01234') and set(train['label']) == set('01234')
    if kind == 'grade': assert set(vals.iloc[:, 0]) <= set('01234') and set(train['diagnosis']) <= set('01234')
    if kind == 'number':
        for v in (sol['Pawpularity'], train['Pawpularity']): assert v.astype(int).between(1, 100).all()
        assert train[PET_COLS[1:-1]].isin(['0', '1']).all().all()
    if kind == 'labels':
        for lbls in list(sol['labels']) + list(train['labels']):
            ls = lbls.split(' ')
            assert set(ls) <= PP2021 and 1 <= len(ls) <= 2 and len(set(ls)) == len(ls) and ('healthy' not in ls or ls == ['healthy'])
        assert any(' ' in l for l in train['labels'])
    if name.startswith('cassava'):
        import json
        names = json.loads((root / 'label_num_to_disease_map.json').read_text())
        assert sorted(names) == list('01234') and names['4'] == 'Healthy'


def test_small_like_samples_have_tens_per_class_and_realistic_balance(tmp_path):
    c = write_sample(tmp_path / 'cassava', like='cassava-leaf-disease-classification')
    counts = pd.read_csv(c / 'train.csv')['label'].value_counts()
    assert counts.idxmax() == 3 and 10 <= counts.min() and counts.max() <= 60   # skewed to CMD, as the real one
    assert 20 <= len(pd.read_csv(c / 'sample_submission.csv')) <= 60
    d = write_sample(tmp_path / 'dogs', like='dog-breed-identification')
    breeds = pd.read_csv(d / 'labels.csv')['breed'].value_counts()
    assert 5 <= len(breeds) <= 12 and 'black-and-tan_coonhound' in breeds and breeds.between(15, 40).all()


def test_a_like_sample_is_the_same_for_a_seed(tmp_path):
    name = 'dogs-vs-cats-redux-kernels-edition'   # zips too
    a, b, c = (write_sample(tmp_path / d, scale=0.0005, seed=s, like=name) for d, s in (('a', 4), ('b', 4), ('c', 5)))
    digest = lambda root: {str(f.relative_to(root)): hashlib.md5(f.read_bytes()).hexdigest()
                           for f in sorted(root.rglob('*')) if f.is_file()}
    assert digest(a) == digest(b) and digest(a) != digest(c)


def test_like_paddy_is_the_default_sample(tmp_path):
    p = write_sample(tmp_path / 'p', scale=0.001, seed=0, like='paddy-disease-classification')
    q = write_sample(tmp_path / 'q', scale=0.001, seed=0)
    files = lambda root: {str(f.relative_to(root)): f.read_bytes() for f in sorted(root.rglob('*')) if f.is_file()}
    assert files(p) == files(q)


def test_a_failed_like_sample_leaves_nothing(tmp_path, monkeypatch):
    from comp import draw
    def broken(*a): raise RuntimeError('drawing failed')
    monkeypatch.setitem(draw.DRAW, 'fundus', broken)
    with pytest.raises(RuntimeError, match='drawing failed'):
        write_sample(tmp_path / 'aptos', scale=0.001, like='aptos2019-blindness-detection', workers=1)
    assert list(tmp_path.iterdir()) == []


def test_an_unknown_like_name_is_one_line_listing_the_known_ones(tmp_path):
    from comp.errors import ConfigError
    with pytest.raises(ConfigError) as e:
        write_sample(tmp_path / 'x', like='titanic')
    msg = str(e.value)
    assert '\n' not in msg and "'titanic'" in msg and all(n in msg for n in [*KAGGLE, 'paddy-disease-classification'])
    assert not (tmp_path / 'x').exists()
    one_line(comp_cli('sample', 'x', '--like', 'titanic', cwd=tmp_path), 'titanic', 'aptos2019-blindness-detection')
    assert list(tmp_path.iterdir()) == []


def test_comp_sample_like_writes_and_records_the_competition(tmp_path):
    r = comp_cli('sample', 'cactus', '--like', 'aerial-cactus-identification', '--scale', '0.001', cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert "aerial-cactus-identification's layout" in r.stdout
    assert (tmp_path / 'cactus' / 'train.zip').is_file() and (tmp_path / 'comp.json').is_file()
    # recorded as `comp setup` records the competition: its zips unpacked, its own metric (ROC AUC, which the files
    # alone do not tell from log loss)
    comp = competition.find(workdir=tmp_path)
    assert comp.name == 'aerial-cactus-identification' and comp.layout.metric == 'auc'
    assert comp.layout.submission == 'prob' and (tmp_path / 'cactus' / 'train').is_dir()
