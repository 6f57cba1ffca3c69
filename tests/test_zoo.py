"""The model zoo against timm's registry: recipes, tags, any timm name, close matches."""
import pytest
import timm

from comp import zoo
from comp.errors import ConfigError


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
    with pytest.raises(ConfigError, match="convnext_small has no pretrained tag 'nosuchtag'.*fb_in22k"):
        zoo.recipe('convnext_small.nosuchtag')


def test_a_suggestion_is_never_the_name_given():
    assert 'did you mean x?' not in zoo._did_you_mean('x', ['x', 'xy'])


def test_any_timm_name_works():
    r = zoo.recipe('efficientnet_b0')
    assert r.arch == 'efficientnet_b0' and r.size == (224, 224)
    assert zoo.recipe('deit_tiny_patch16_224').size == (224, 224)


def test_the_swin_recipes_are_the_ones_with_channels_last_features():
    # fastai's pooled head would read their (batch, h, w, channels) features as (batch, channels, h, w)
    nhwc = {name for name, r in zoo.RECIPES.items() if zoo.features_nhwc(r.arch)}
    assert nhwc == {name for name in zoo.RECIPES if name.startswith('swin')}
