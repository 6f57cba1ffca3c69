"""comp.config: one source for every training setting (the CLI's options are built from it), each setting checked
once in resolve, a run's identity, and old records read with the values they trained with."""
import json
from dataclasses import fields

import pytest

from comp import config, cv, runs
from comp.config import TrainConfig, resolve
from comp.errors import ConfigError
from conftest import comp_cli


def _commands():
    import typer
    from comp.cli import app
    return typer.main.get_command(app).commands


@pytest.mark.parametrize('command', ['train', 'cv', 'auto'])
def test_every_training_option_has_the_fields_default_help_and_flag(command):
    by_name = {f.name: f for f in fields(TrainConfig)}
    params = {p.name: p for p in _commands()[command].params if p.name in by_name}
    for own in ('folds', 'arch'):   # cv's and auto's own: how many folds to train (at most); cv's ARCH argument
        if command != 'train': params.pop(own, None)
    assert len(params) >= 6
    for name, p in params.items():
        f = by_name[name]
        assert p.help == f.metadata['help'], name
        assert p.default == f.default, name   # typer's default is the dataclass's, so --resume sees what was given
        assert f'--{name.replace("_", "-")}' in p.opts, name
    if command == 'train': assert set(params) == set(by_name)   # train offers every setting


def test_a_setting_is_checked_in_resolve_before_anything_trains():
    # lr and workers were checked only when a run was made; now any resolve (comp auto's plan too) refuses them
    for kw, words in [(dict(lr='0'), '--lr 0.0: use a positive number'), (dict(lr='fast'), 'use a number such as'),
                      (dict(workers=-1), '--workers -1: use 0'), (dict(procs=0), '--procs must be at least 1'),
                      (dict(resize='stretch:96'), 'use squish, crop or pad')]:
        with pytest.raises(ConfigError, match=words):
            resolve(TrainConfig(arch='test_convnext', **kw))
    c = resolve(TrainConfig(arch='test_convnext', lr='0.02', resize='pad:96x72', workers=0))
    assert c['lr'] == 0.02 and c['resize'] == ['pad', [96, 72]] and c['workers'] == 0 and c['procs'] == 1


def test_given_names_what_differs_from_the_defaults():
    assert config.given(TrainConfig()) == {}
    assert config.given(TrainConfig(epochs=3, seed=42, valid_pct=0.3)) == {'epochs': 3, 'valid_pct': 0.3}


def test_an_old_record_reads_with_the_values_it_trained_with_and_is_found_again(tmp_path):
    c = resolve(TrainConfig(arch='test_convnext', workers=0))
    old = {k: v for k, v in c.items() if k not in config.OLD_RECORDS and k not in ('normalize', 'images')}
    assert 'procs' not in old and 'keep' not in old
    d = tmp_path / runs.RUNS_DIR / '20250101-000000-test_convnext'
    d.mkdir(parents=True)
    (d / 'config.json').write_text(json.dumps(old))
    run = runs.Run(d)
    run.set_status('complete')
    assert run.config['procs'] == 1 and run.config['keep'] == 'last' and run.config['min_scale'] == 0.75
    assert run.config['normalize'] is None and run.config['cache'] is True
    assert runs.trained(c, tmp_path) == run
    assert runs.trained({**c, 'epochs': c['epochs'] + 1}, tmp_path) is None   # another recipe is another run
    assert runs.trained(c, tmp_path, kind='cv') is None


def test_cv_needs_an_arch_or_a_group_and_refuses_options_with_resume(workspace):
    with pytest.raises(ConfigError, match='give an ARCH'): cv.cv(None)
    with pytest.raises(ConfigError, match='drop --epochs'): cv.cv(TrainConfig(epochs=3), resume='g')
    r = comp_cli('cv', '--resume', 'some-group', '--epochs', '3', cwd=workspace)
    assert r.returncode == 1 and r.stderr.count('\n') == 1
    assert '--resume continues CV group some-group with its saved config: drop --epochs' in r.stderr
    r = comp_cli('cv', '--epochs', '3', cwd=workspace)
    assert r.returncode == 1 and 'give an ARCH' in r.stderr
    assert not (workspace / runs.RUNS_DIR).exists()


def test_every_number_setting_refuses_values_that_are_not_finite_or_make_no_sense():
    # --mixup inf was accepted and recorded as Infinity, which is not JSON; valid_pct was not checked at all
    floats = [f.name for f in fields(TrainConfig) if f.metadata['cli'] is float or isinstance(f.default, float)]
    assert {'valid_pct', 'label_smoothing', 'mixup', 'cutmix', 'ema', 'min_scale', 'max_zoom'} <= set(floats)
    for k in floats:
        for v in (float('nan'), float('inf'), -float('inf'), -0.5):
            with pytest.raises(ConfigError, match=f'^{config.flag(k)} {v}: use '):
                resolve(TrainConfig(arch='test_convnext', **{k: v}))
    for v in (1.0, 1.5):
        with pytest.raises(ConfigError, match=f'--valid-pct {v}: use a fraction .* such as 0.2'):
            resolve(TrainConfig(arch='test_convnext', valid_pct=v))
    assert resolve(TrainConfig(arch='test_convnext', valid_pct=0))['valid_pct'] == 0   # every image trains


def test_progressive_sizes_must_grow_and_a_bad_entry_names_sizes():
    for sizes, words in [('128,96,160', '96 after 128 does not grow'), ('96,96', '96 after 96 does not grow'),
                         ('64x96,96x64', '96x64 after 64x96'), ('64,b', "--sizes 'b'")]:
        with pytest.raises(ConfigError, match=words): resolve(TrainConfig(arch='test_convnext', epochs=3, sizes=sizes))
    assert resolve(TrainConfig(arch='test_convnext', epochs=3, sizes='64,96'))['sizes'] == [[64, 64], [96, 96]]
