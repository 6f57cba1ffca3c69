"""Recipes against timm's registry, option overrides, shared splits and folds (no training here)."""
import pytest
import timm

from comp import competition, data, zoo
from comp.errors import ConfigError
from comp.train import TrainConfig, resolve


@pytest.mark.parametrize('name', list(zoo.RECIPES))
def test_recipe_exists_in_timm_with_its_tag(name):
    r = zoo.RECIPES[name]
    assert r.arch.split('.')[0] in timm.list_models()
    assert r.arch in timm.list_pretrained(), f'{r.arch}: no such pretrained tag'
    cfg = timm.get_pretrained_cfg(r.arch)
    if cfg.fixed_input_size: assert tuple(r.size) == tuple(cfg.input_size[1:])


def test_reference_recipe_defaults():
    r = zoo.RECIPES['convnext_small']
    assert (r.size, r.resize, r.lr, r.epochs, r.schedule) == ((256, 192), ('pad', (480, 360)), 0.01, 12, 'fine_tune')
    for name in ('convnext_small', 'convnext_base', 'convnext_large', 'vit_small', 'vit_base', 'vit_large',
                 'swin_base', 'swin_large', 'swinv2_base', 'swinv2_large', 'resnet26d', 'test_convnext', 'test_vit'):
        assert name in zoo.RECIPES


def test_unknown_arch_suggests_close_matches():
    with pytest.raises(ConfigError, match='did you mean convnext_small'): zoo.recipe('convnext_smal')
    with pytest.raises(ConfigError, match='unknown arch'): zoo.recipe('no_such_model_at_all')


def test_any_timm_name_works():
    r = zoo.recipe('efficientnet_b0')
    assert r.arch == 'efficientnet_b0' and r.size == (224, 224)
    assert zoo.recipe('deit_tiny_patch16_224').size == (224, 224)


def test_options_override_recipe_and_config_is_explicit():
    c = resolve(TrainConfig(arch='convnext_small', size='224x160', resize=('crop', '320x240'), bs=8, accum=4,
                            lr='0.002', epochs=3, schedule='one_cycle'))
    assert c['size'] == [224, 160] and c['resize'] == ['crop', [320, 240]]
    assert (c['bs'], c['accum'], c['lr'], c['epochs'], c['schedule']) == (8, 4, 0.002, 3, 'one_cycle')
    assert c['arch'] == 'convnext_small.fb_in22k' and c['pretrained'] is True and c['workers'] >= 1
    d = resolve(TrainConfig(arch='convnext_small'))
    assert (d['bs'], d['accum'], d['size'], d['resize']) == (32, 1, [256, 192], ['pad', [480, 360]])


@pytest.mark.parametrize('kw, msg', [
    (dict(arch='vit_small', size=256), 'only takes 224x224'),
    (dict(schedule='warmup'), 'use fine_tune or one_cycle'),
    (dict(precision='fp8'), 'use auto, fp32, fp16, bf16'),
    (dict(lr='fast'), 'use a number such as 0.01, or auto'),
    (dict(resize=('stretch', 480)), 'use squish, crop or pad'),
    (dict(target='age'), 'use disease or disease+variety'),
    (dict(bs=0), '--bs must be at least 1'),
])
def test_bad_options_say_how_to_fix(kw, msg):
    with pytest.raises(ConfigError, match=msg.replace('+', r'\+')): resolve(TrainConfig(**kw))


def test_split_is_stored_once_and_reused(tiny_sample, tmp_path):
    comp = competition.load(tiny_sample)
    a = data.valid_ids(comp, tmp_path, seed=1)
    f = data.split_file(tmp_path, 1)
    assert f.is_file()
    mtime = f.stat().st_mtime_ns
    assert data.valid_ids(comp, tmp_path, seed=1) == a and f.stat().st_mtime_ns == mtime
    assert data.valid_ids(comp, tmp_path, seed=2) != a
    labels = comp.train_df().set_index('image_id')['label']
    per_label = labels[list(a)].value_counts().reindex(labels.unique(), fill_value=0)
    assert ((per_label - 0.2 * labels.value_counts()).abs() <= 1).all()  # 20% of every label, to rounding


def test_folds_disjoint_covering_and_stratified(small_sample, tmp_path):
    comp = competition.load(small_sample)
    k = 5
    folds = [data.valid_ids(comp, tmp_path, seed=3, folds=k, fold=i) for i in range(k)]
    ids = set(comp.train_df()['image_id'])
    assert set().union(*folds) == ids and sum(map(len, folds)) == len(ids)
    labels = comp.train_df().set_index('image_id')['label']
    for f in folds:
        counts = labels[list(f)].value_counts()
        expected = labels.value_counts() / k
        assert ((counts - expected).abs() <= 1).all()
    with pytest.raises(ConfigError, match='--fold 5 must be between 0 and 4'):
        data.valid_ids(comp, tmp_path, seed=3, folds=k, fold=5)


def test_split_for_other_images_is_refused(tiny_sample, small_sample, tmp_path):
    data.valid_ids(competition.load(tiny_sample), tmp_path, seed=0)
    with pytest.raises(ConfigError, match='delete it to make a new split'):
        data.valid_ids(competition.load(small_sample), tmp_path, seed=0)
