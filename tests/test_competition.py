"""A competition folder: loading, every problem reported at once, other layouts, and finding the recorded one."""
import shutil

import pandas as pd
import pytest

from comp import checks, competition
from comp.competition import Layout
from comp.errors import DataError
from conftest import comp_cli, one_line


def problems(root):
    with pytest.raises(DataError) as e:
        competition.load(root)
    return str(e.value)


def test_valid_sample_loads_with_vocab_and_test_ids(tiny_sample):
    comp = competition.load(tiny_sample)
    assert comp.vocab() == sorted(p.name for p in (tiny_sample / 'train_images').iterdir())
    assert comp.test_ids() == list(pd.read_csv(tiny_sample / 'sample_submission.csv', dtype=str)['image_id'])


def test_missing_folder_and_file(tiny_copy):
    shutil.rmtree(tiny_copy / 'test_images')
    (tiny_copy / 'train.csv').unlink()
    msg = problems(tiny_copy)
    assert 'missing folder test_images/' in msg and 'missing file train.csv' in msg


def test_wrong_columns(tiny_copy):
    df = pd.read_csv(tiny_copy / 'train.csv').rename(columns={'variety': 'kind'})
    df.to_csv(tiny_copy / 'train.csv', index=False)
    assert 'train.csv has columns image_id,label,kind,age; expected image_id,label,variety,age' in problems(tiny_copy)


def test_labels_differ_from_folders_and_ids_without_images(tiny_copy):
    df = pd.read_csv(tiny_copy / 'train.csv')
    df.loc[0, 'label'] = 'rust'
    df.loc[1, 'image_id'] = '999999.jpg'
    df.to_csv(tiny_copy / 'train.csv', index=False)
    msg = problems(tiny_copy)
    assert 'labels in train.csv differ from the folders in train_images/ (no folder for: rust)' in msg
    assert '999999.jpg' in msg and 'have no image' in msg


def test_image_in_the_wrong_label_folder(tiny_copy):
    df = pd.read_csv(tiny_copy / 'train.csv')
    i, lbl = df.loc[0, 'image_id'], df.loc[0, 'label']
    shutil.move(tiny_copy / 'train_images' / lbl / i, tiny_copy / 'train_images' / 'normal' / i)
    assert f'{i} (label {lbl}, found in normal/)' in problems(tiny_copy)


def test_undecodable_images_are_named(tiny_copy):
    bad = sorted((tiny_copy / 'train_images' / 'blast').iterdir())[0]
    bad.write_bytes(bad.read_bytes()[:2000])  # truncated JPEG
    (tiny_copy / 'test_images' / '200002.jpg').write_bytes(b'not an image')
    msg = problems(tiny_copy)
    assert '2 images cannot be decoded' in msg
    assert f'train_images/blast/{bad.name}' in msg and 'test_images/200002.jpg' in msg


def test_duplicate_and_missing_test_ids(tiny_copy):
    sub = pd.read_csv(tiny_copy / 'sample_submission.csv', dtype=str)
    sub = pd.concat([sub, sub.iloc[:1], pd.DataFrame({'image_id': ['299999.jpg'], 'label': ['']})])
    sub.to_csv(tiny_copy / 'sample_submission.csv', index=False)
    msg = problems(tiny_copy)
    assert 'duplicate test ids in sample_submission.csv: 200001.jpg' in msg
    assert '1 test ids have no image in test_images/: 299999.jpg' in msg


def test_every_problem_reported_at_once(tiny_copy):
    df = pd.read_csv(tiny_copy / 'train.csv')
    df.loc[1, 'image_id'] = '999999.jpg'
    df.to_csv(tiny_copy / 'train.csv', index=False)
    sub = pd.read_csv(tiny_copy / 'sample_submission.csv', dtype=str)
    pd.concat([sub, sub.iloc[:1]]).to_csv(tiny_copy / 'sample_submission.csv', index=False)
    msg = problems(tiny_copy)
    assert '999999.jpg' in msg and 'duplicate test ids' in msg


def test_other_competition_layout(tiny_copy):
    (tiny_copy / 'train_images').rename(tiny_copy / 'train')
    df = pd.read_csv(tiny_copy / 'train.csv').drop(columns=['variety', 'age'])
    df.to_csv(tiny_copy / 'train.csv', index=False)
    with pytest.raises(DataError): competition.load(tiny_copy)
    comp = competition.load(tiny_copy, name='other', layout=Layout(train_dir='train', extra_cols=[]))
    assert len(comp.train_df()) == len(df)


def test_find_uses_recorded_competition_or_says_how_to_get_one(tiny_sample, tmp_path):
    with pytest.raises(DataError, match='comp sample DIR'):
        competition.find(workdir=tmp_path)
    competition.record(competition.load(tiny_sample), tmp_path)
    assert competition.find(workdir=tmp_path).path == tiny_sample.resolve()


def test_a_sample_submission_with_no_rows(tiny_copy, tmp_path):
    (tiny_copy / 'sample_submission.csv').write_text('image_id,label\n')
    before = sorted(tmp_path.iterdir())
    one_line(comp_cli('validate', 'x.csv', '--data', tiny_copy, cwd=tmp_path), 'sample_submission.csv has no rows')
    assert sorted(tmp_path.iterdir()) == before  # nothing written


def test_a_too_large_image_and_an_empty_label_are_named(tiny_copy, monkeypatch, tmp_path):
    from PIL import Image
    monkeypatch.setattr(Image, 'MAX_IMAGE_PIXELS', 1000)
    assert checks._decodes(next((tiny_copy / 'test_images').iterdir())) == 'too large'
    monkeypatch.undo()
    df = pd.read_csv(tiny_copy / 'train.csv', dtype=str, keep_default_na=False)
    df.loc[0, 'label'] = ''
    df.to_csv(tiny_copy / 'train.csv', index=False)
    found = ' '.join(checks.problems_of(competition.Competition(tiny_copy), check_images=False))
    assert 'empty label' in found and df.loc[0, 'image_id'] in found
    assert "(no folder for: '')" in found


# --- describing any competition from its files ------------------------------------------------------------------
def flat_competition(root, train_cols, n=12, ext='.jpg', sample_value='0.5'):
    """A tiny flat competition: `train_cols` (column -> list of n values, the id column first), images named by id."""
    from PIL import Image
    root.mkdir()
    for d in ('train', 'test'): (root / d).mkdir()
    cols = dict(train_cols)
    id_col = next(iter(cols))
    for i in cols[id_col]: Image.new('RGB', (8, 8), (i.__hash__() % 255, 0, 0)).save(root / 'train' / f'{i}{ext}')
    pd.DataFrame(cols).to_csv(root / 'train.csv', index=False)
    test = [f't{k}' for k in range(4)]
    for i in test: Image.new('RGB', (8, 8)).save(root / 'test' / f'{i}{ext}')
    pd.DataFrame({id_col: test, 'target': sample_value}).to_csv(root / 'sample_submission.csv', index=False)
    return root


def test_paddy_is_described_as_the_layout_it_always_had(tiny_sample):
    comp = competition.describe(tiny_sample, name=competition.PADDY)
    L, P = comp.layout, Layout()
    assert (L.images, L.task, L.submission, L.metric, L.columns, L.ext) == ('folders', 'single', 'label', 'accuracy',
                                                                          ['image_id', 'label'], '')
    assert (L.train_dir, L.test_dir, L.id_col, L.label_col, L.extra_cols) == (P.train_dir, P.test_dir, P.id_col, P.label_col,
                                                                            P.extra_cols)
    assert comp.vocab() == competition.load(tiny_sample).vocab()


def test_an_ambiguous_label_column_names_the_choices_and_the_setting(tmp_path):
    ids = [f'a{k}' for k in range(12)]
    root = flat_competition(tmp_path / 'c', {'id': ids, 'colour': ['red', 'blue'] * 6, 'shape': ['x', 'y', 'z'] * 4})
    with pytest.raises(competition.ConfigError, match='colour, shape.*--set label_col=NAME'):
        competition.describe(root)
    comp = competition.describe(root, label_col='shape', metric='accuracy')
    assert comp.vocab() == ["x", "y", "z"] and comp.layout.ext == ".jpg" and comp.layout.submission == "label"
    assert list(comp.train_df()['label']) == ['x', 'y', 'z'] * 4


def test_integers_are_classes_a_grade_or_a_number_as_the_metric_says(tmp_path):
    ids = [f'a{k}' for k in range(12)]
    root = flat_competition(tmp_path / 'c', {'id': ids, 'target': [0, 1, 2, 3] * 3}, sample_value='0')
    assert competition.describe(root).layout.task == 'single'
    assert competition.describe(root, metric='qwk').layout.task == 'ordinal'
    graded = competition.describe(root, kaggle_metric='Quadratic Weighted Kappa')
    assert (graded.layout.task, graded.layout.submission, graded.layout.range) == ('ordinal', 'grade', [0.0, 3.0])
    assert competition.describe(root, metric='rmse').layout.task == 'regression'


def test_a_setting_that_is_not_one_and_a_damaged_layout_record_are_one_line(tmp_path, tiny_sample):
    with pytest.raises(competition.ConfigError, match='--set colour: not a layout setting'):
        competition.describe(tiny_sample, colour='red')
    ws = tmp_path / 'ws'
    ws.mkdir()
    rec = competition.describe(tiny_sample).info()
    rec['layout']['metrc'] = 'auc'
    (ws / 'comp.json').write_text(__import__('json').dumps(rec))
    with pytest.raises(DataError, match='unknown key metrc'):
        competition.find(workdir=ws)


def test_an_edited_comp_json_changes_the_metric(tmp_path, tiny_sample):
    import json
    ws = tmp_path / 'ws'
    ws.mkdir()
    rec = competition.describe(tiny_sample).info()
    rec['layout']['metric'] = 'log_loss'
    (ws / 'comp.json').write_text(json.dumps(rec))
    assert competition.find(workdir=ws).metric == 'log_loss'


def test_no_sample_submission_or_no_images_is_one_line(tmp_path):
    ids = [f'a{k}' for k in range(12)]
    root = flat_competition(tmp_path / 'c', {'id': ids, 'target': ['a', 'b'] * 6})
    (root / 'sample_submission.csv').unlink()
    with pytest.raises(DataError, match='no sample_submission.csv'):
        competition.describe(root)
    one_line(comp_cli('sample', tmp_path / 'x', '--like', 'no-such-competition', cwd=tmp_path), 'no-such-competition')


def test_data_option_on_another_kind_infers_it(tmp_path, tiny_copy):
    from comp.sample import write_sample
    path = write_sample(tmp_path / 'dogs', scale=0.001, like='dog-breed-identification')
    comp = competition.find(data=path, workdir=tmp_path)
    assert (comp.layout.submission, comp.layout.metric, comp.layout.ext) == ('probs', 'log_loss', '.jpg')
    # a broken Paddy folder is still reported as Paddy's, not taken for another kind
    (tiny_copy / 'train.csv').write_text('image_id,label,variety,age\n')
    with pytest.raises(DataError, match='train.csv has no rows'):
        competition.find(data=tiny_copy, workdir=tmp_path)


def test_label_folders_with_spaces_are_one_class_each_and_train(tiny_copy, tmp_path, monkeypatch):
    from comp import config, train
    df = pd.read_csv(tiny_copy / 'train.csv', dtype=str)
    df['label'] = df['label'].str.replace('_', ' ')
    df.to_csv(tiny_copy / 'train.csv', index=False)
    for d in list((tiny_copy / 'train_images').iterdir()): d.rename(d.parent / d.name.replace('_', ' '))
    comp = competition.describe(tiny_copy, name=competition.PADDY)
    assert comp.task == 'single' and 'bacterial leaf blight' in comp.vocab()
    ws = tmp_path / 'ws'
    ws.mkdir()
    competition.record(comp, ws)
    run = train.train(config.TrainConfig(arch='test_convnext', size='32', epochs=1, workers=0), workdir=ws, quiet=True)
    assert run.vocab == comp.vocab() and run.result['valid_error'] is not None


def test_names_with_spaces_are_classes_and_combinations_of_labels_are_several(tmp_path):
    ids = [f'a{k}' for k in range(12)]
    names = flat_competition(tmp_path / 'names', {'id': ids, 'target': ['brown spot', 'leaf blight', 'healthy'] * 4}, sample_value='healthy')
    assert competition.describe(names).task == 'single'
    multi = flat_competition(tmp_path / 'multi', {'id': ids, 'target': ['rust', 'scab', 'rust scab'] * 4}, sample_value='rust')
    comp = competition.describe(multi)
    assert (comp.task, comp.layout.submission, comp.vocab()) == ('multi', 'labels', ['rust', 'scab'])


def test_tiff_images_without_extension_in_the_ids(tmp_path):
    ids = [f'a{k}' for k in range(12)]
    root = flat_competition(tmp_path / 'tif', {'id': ids, 'target': ['x', 'y'] * 6}, ext='.tif', sample_value='x')
    comp = competition.describe(root)
    assert comp.layout.ext == '.tif' and comp.test_file('t0') == 'test/t0.tif'
    assert list(comp.train_df()['path'])[:1] == ['train/a0.tif']
