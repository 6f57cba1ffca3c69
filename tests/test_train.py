"""Training: the resolved config and the settings it refuses, the schedules, lr_find, resume (and when it is refused),
augmentation and regularisers, other input sizes, and what a run records, with real fastai training of timm's tiny
models."""
import json
import os
import shutil
import signal
import subprocess
import sys
import time

import numpy as np
import pandas as pd
import pytest
import torch

from comp import competition, config, runs, train
from comp.errors import CompError, ConfigError
from comp.learner import no_bars, training_learner
from comp.config import TrainConfig, resolve
from conftest import SWIN, comp_cli, ended_pid, fake_run, one_line, snapshot

slow = pytest.mark.slow


def tc(**kw):
    return TrainConfig(**{'arch': 'test_convnext', 'epochs': 1, 'workers': 0, **kw})


def test_options_override_recipe_and_config_is_explicit():
    c = resolve(TrainConfig(arch='convnext_small', size='224x160', resize=('crop', '320x240'), bs=8, accum=4,
                            lr='0.002', epochs=3, schedule='one_cycle'))
    assert c['size'] == [224, 160] and c['resize'] == ['crop', [320, 240]]
    assert (c['bs'], c['accum'], c['lr'], c['epochs'], c['schedule']) == (8, 4, 0.002, 3, 'one_cycle')
    assert c['arch'] == 'convnext_small.fb_in22k' and c['pretrained'] is True and c['workers'] >= 1
    d = resolve(TrainConfig(arch='convnext_small'))
    assert (d['bs'], d['accum'], d['size'], d['resize']) == (32, 1, [256, 192], ['pad', [480, 360]])


def test_without_pretrained_weights_the_default_schedule_is_one_cycle():
    # fine_tune would freeze a random body for an epoch, then train it at half the rate (error 0.36 vs 0.08)
    for kw in (dict(arch='convnext_small', pretrained=False), dict(arch='resnet18', pretrained=False),
               dict(arch='coatnet_0_224')):   # coatnet_0_224: timm has no weights for it
        c = resolve(TrainConfig(**kw))
        assert (c['schedule'], c['pretrained']) == ('one_cycle', False), kw
        assert 'no pretrained weights' in c['schedule_why']
    c = resolve(TrainConfig(arch='convnext_small'))
    assert (c['schedule'], c['pretrained']) == ('fine_tune', True) and 'recipe' in c['schedule_why']
    c = resolve(TrainConfig(arch='resnet18', pretrained=False, schedule='fine_tune'))
    assert c['schedule'] == 'fine_tune' and c['schedule_why'] == 'set by --schedule'


@pytest.mark.parametrize('kw, msg', [
    (dict(arch='test_vit', sizes='96,160', epochs=2), 'built for one input size'),
    (dict(mixup=0.4, cutmix=1.0), 'use one of them'),
    (dict(label_smoothing=1), 'such as 0.1'),
    (dict(ema=1.5), 'such as 0.998'),
    (dict(keep='first'), 'use best or last'),
    (dict(average_last=3, keep='best'), 'use it with --keep last'),
    (dict(min_scale=0), 'up to 1'),
    (dict(sizes='64', epochs=2), 'such as 128,192,256'),
    # a window-partition model timm cannot build at that size, and a ViT size its patches do not divide
    (dict(arch='test_maxvit', size=100, pretrained=False), 'cannot be built for that size'),
    (dict(arch='test_maxvit', size=100, pretrained=False), 'use a multiple of 32 such as --size 96x96'),
    (dict(arch='test_vit', size=100), 'should be divisible by patch size'),
    (dict(schedule='warmup'), 'use fine_tune or one_cycle'),
    (dict(precision='fp8'), 'use auto, fp32, fp16, bf16'),
    (dict(lr='fast'), 'use a number such as 0.01, or auto'),
    (dict(resize=('stretch', 480)), 'use squish, crop or pad'),
    (dict(target='age'), 'use disease or disease+variety'),
    (dict(bs=0), '--bs must be at least 1'),
])
def test_bad_options_say_how_to_fix(kw, msg):
    with pytest.raises(ConfigError, match=msg.replace('+', r'\+')): resolve(TrainConfig(**kw))


# Settings no run can train with, through train.train: each fails before a run folder exists.
SETTINGS = [
    (dict(lr='-1'), '--lr -1.0: use a positive'), (dict(lr='inf'), '--lr inf'), (dict(lr=0), '--lr 0'),
    (dict(bs=5000), 'no batch would train'), (dict(workers=-1), '--workers -1'), (dict(folds=1), '--folds 1'),
    (dict(folds=3, fold=3), '--fold 3'), (dict(folds=50), 'fewer folds'), (dict(valid_pct=1.5), '--valid-pct 1.5'),
    (dict(valid_pct=0.001), 'another fraction'), (dict(pretrained=True, weights='/no/such.pth'), 'no such file'),
    (dict(size='[]'), "--size '[]'"), (dict(size=4), '--size 4'), (dict(valid_pct=-0.1), '--valid-pct -0.1'),
    (dict(valid_pct=0, keep='best'), 'no validation set'),
]


@pytest.mark.parametrize('kw, msg', SETTINGS, ids=[m for _, m in SETTINGS])
def test_impossible_settings_fail_before_a_run_exists(workspace, kw, msg):
    before = snapshot(workspace)
    with pytest.raises(CompError, match=msg.replace('[', r'\[').replace(']', r'\]')):
        train.train(config.TrainConfig(**{'arch': 'test_convnext', 'epochs': 1, 'workers': 0, **kw}), quiet=True)
    assert snapshot(workspace) == before and not (workspace / 'runs').exists()


@slow
def test_run_directory_records_everything(two_runs):
    ws, run, _ = two_runs
    for f in ('config.json', 'env.json', 'metrics.csv', 'model.pth', 'vocab.json', 'preds_valid.csv',
              'result.json', 'loss.png', 'confusion.png'):
        assert (run / f).is_file(), f
    assert not (run / 'checkpoint.pth').exists()
    cfg = json.loads((run / 'config.json').read_text())
    assert [k for k, v in cfg.items() if v is None] == ['weights', 'folds', 'sizes', 'teacher', 'drop', 'tracker', 'normalize',
                                                      'images']  # the rest filled in
    assert cfg['arch'] == 'test_convnext.r160_in1k' and cfg['size'] == [64, 64] and cfg['epochs'] == 2
    metrics = pd.read_csv(run / 'metrics.csv')
    assert list(metrics['epoch']) == [1, 2]
    assert {'train_loss', 'valid_loss', 'error_rate'} <= set(metrics.columns)
    # one-cycle ends each fit far below its peak: the rate recorded per epoch is the schedule's, not a constant
    assert metrics['lr'].notna().all() and metrics['lr'].iloc[-1] < min(metrics['lr'].iloc[0], cfg['lr'] / 10)
    assert run.status == 'complete'
    env = json.loads((run / 'env.json').read_text())
    assert env['packages']['fastai'] and env['packages']['timm']


@slow
def test_validation_error_matches_saved_predictions(two_runs, tiny_sample):
    ws, run, _ = two_runs
    valid = pd.read_csv(run / 'preds_valid.csv')
    vocab = json.loads((run / 'vocab.json').read_text())
    assert vocab == sorted(vocab) and len(vocab) == 10
    err = (np.array(vocab)[valid[vocab].to_numpy().argmax(1)] != valid['label']).mean()
    assert json.loads((run / 'result.json').read_text())['valid_error'] == pytest.approx(err)
    np.testing.assert_allclose(valid[vocab].sum(1), 1, atol=1e-4)
    # the validation images are the stored shared split's, none of them in training
    split = pd.read_csv(ws / 'splits' / 'valid0.2_seed42.csv', dtype=str)
    assert set(valid['image_id']) == set(split.loc[split['fold'] == '0', 'image_id'])


@slow
def test_lr_auto_runs_lr_find_and_trains_with_its_suggestion(workspace):
    run = train.train(tc(lr='auto'), quiet=True)
    found = json.loads((run / 'lr_find.json').read_text())
    assert set(found['suggestions']) == {'minimum', 'steep', 'valley', 'slide'}
    assert (run / 'lr_find.png').stat().st_size > 1000
    assert json.loads((run / 'result.json').read_text())['lr'] == pytest.approx(found['suggestions']['valley'])


@slow
def test_resume_keeps_the_learning_rate_lr_find_chose(workspace):
    run = train.train(tc(lr='auto', epochs=2, schedule='one_cycle'), quiet=True)
    chosen = json.loads((run / 'lr_find.json').read_text())
    # make the run look interrupted after epoch 1, with a different model state than lr_find saw
    (run / 'result.json').unlink()
    run.status_file.write_text(json.dumps({'status': 'running', 'epochs_done': 1, 'pid': ended_pid()}))
    shutil.copy(run / 'model.pth', run / 'checkpoint.pth')
    stamp = (run / 'lr_find.png').stat().st_mtime_ns
    train.train(None, resume=run.name, quiet=True)
    res = json.loads((run / 'result.json').read_text())
    assert res['lr'] == pytest.approx(chosen['suggestions']['valley'])
    assert (run / 'lr_find.png').stat().st_mtime_ns == stamp  # lr_find did not run again


@slow
def test_fine_tune_keeps_the_body_frozen_then_trains_it_with_comps_optimizer(workspace, tmp_path):
    comp = competition.find()
    learn, _ = training_learner(resolve(tc(), comp), comp, tmp_path, tmp_path)
    learn.create_opt()
    assert isinstance(learn.opt.opt, torch.optim.AdamW)  # PyTorch's multi-tensor step, not fastai's per-parameter loop
    convs = [m.weight for m in learn.model[0].modules() if isinstance(m, (torch.nn.Conv2d, torch.nn.Linear))]
    head = [p for p in learn.model[1].parameters()]
    snaps = []

    from fastai.vision.all import Callback
    class Snap(Callback):
        def after_fit(self): snaps.append([p.detach().clone() for p in convs + head])
    learn.add_cb(Snap())
    start = [p.detach().clone() for p in convs + head]
    train.fit(no_bars(learn), 'fine_tune', 1, 1e-2)
    frozen, unfrozen = snaps
    n = len(convs)
    assert all(torch.equal(a, b) for a, b in zip(start[:n], frozen[:n]))       # body untouched while frozen
    assert any(not torch.equal(a, b) for a, b in zip(start[n:], frozen[n:]))   # the head trained
    assert any(not torch.equal(a, b) for a, b in zip(frozen[:n], unfrozen[:n]))  # then the body trained


@slow
def test_runs_validate_on_the_same_images(workspace):
    a = train.train(tc(), quiet=True)
    b = train.train(tc(arch='test_vit'), quiet=True)
    ids = lambda r: set(pd.read_csv(r / 'preds_valid.csv', dtype=str)['image_id'])
    assert ids(a) == ids(b)
    c = train.train(tc(folds=3, fold=1), quiet=True)
    assert ids(c) != ids(a)


@slow
def test_no_network_and_no_weights_is_one_line_error(workspace, monkeypatch):
    monkeypatch.setenv('HF_HUB_OFFLINE', '1')
    monkeypatch.setenv('HF_HUB_CACHE', str(workspace / 'empty-hub-cache'))
    with pytest.raises(CompError, match='--no-pretrained'):
        train.train(tc(pretrained=True), quiet=True)
    r = comp_cli('train', '--arch', 'test_convnext', '--pretrained', '--epochs', '1', cwd=workspace,
                 env={'HF_HUB_OFFLINE': '1', 'HF_HUB_CACHE': str(workspace / 'empty-hub-cache')})
    assert r.returncode == 1 and 'Traceback' not in r.stderr and r.stderr.count('\n') == 1
    assert '--weights' in r.stderr


@slow
@pytest.mark.parametrize('schedule, epochs, total', [('one_cycle', 6, 6), ('fine_tune', 5, 6)])
def test_resume_after_killed_process(workspace, schedule, epochs, total):
    # fine_tune's frozen epoch counts as epoch 1, so a kill after epoch 2 resumes inside the unfrozen phase
    exe = os.path.join(os.path.dirname(sys.executable), 'comp')
    p = subprocess.Popen([exe, 'train', '--arch', 'test_convnext', '--epochs', str(epochs), '--workers', '0',
                          '--schedule', schedule], cwd=workspace, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    deadline = time.time() + 300
    run = None
    while time.time() < deadline:
        found = list((workspace / 'runs').glob('*/status.json')) if (workspace / 'runs').exists() else []
        if found and json.loads(found[0].read_text()).get('epochs_done', 0) >= 2:
            run = runs.Run(found[0].parent)
            break
        time.sleep(0.2)
    p.send_signal(signal.SIGKILL)
    p.wait()
    assert run is not None, 'training never got to epoch 2'
    assert run.status == 'incomplete'
    assert not (run / 'result.json').exists() and not (run / 'model.pth').exists()
    done = json.loads((run / 'status.json').read_text())['epochs_done']
    assert done < total
    r = comp_cli('runs', '--json', cwd=workspace)
    assert json.loads(r.stdout)[0]['status'] == 'incomplete'
    r = comp_cli('train', '--resume', run.name, cwd=workspace)
    assert r.returncode == 0, r.stderr[-2000:]
    assert run.status == 'complete'
    m = pd.read_csv(run / 'metrics.csv')
    assert list(m['epoch']) == list(range(1, total + 1))
    assert f'epoch {done + 1}:' in r.stdout and f'epoch {done}:' not in r.stdout
    r = comp_cli('train', '--resume', run.name, cwd=workspace)
    assert r.returncode == 1 and 'already complete' in r.stderr


def test_precision_this_machine_lacks_fails_before_any_run(workspace):
    if torch.cuda.is_available(): pytest.skip('this machine has a GPU')
    with pytest.raises(ConfigError, match='needs a CUDA GPU'):
        train.train(tc(precision='fp16'), quiet=True)
    assert not (workspace / 'runs').exists() or not any((workspace / 'runs').iterdir())


@slow
def test_a_finished_run_gives_its_cache_back(workspace, tmp_path, monkeypatch):
    # A notebook trains several archs in one process; fastai's reference cycles would keep each run's cache
    # in /dev/shm (memory) until the garbage collector happened to run.
    (tmp_path / 'cache').mkdir()
    monkeypatch.setenv('COMP_DECODE_CACHE_DIR', str(tmp_path / 'cache'))
    run = train.train(config.TrainConfig(arch='test_convnext', epochs=1, workers=0), quiet=True)
    assert json.loads((run / 'result.json').read_text())['decode_cache'].endswith(str(tmp_path / 'cache'))
    assert list((tmp_path / 'cache').iterdir()) == []


def _tfm_names(learn):
    """The batch augmentations, with the affine ones fastai merges into one transform named by their functions."""
    fs = learn.dls.train.after_batch.fs
    return ([type(t).__name__ for t in fs] + [f.func.__name__ for t in fs for f in getattr(t, 'aff_fs', [])]
            + [type(f).__name__ for t in fs for f in getattr(t, 'coord_fs', [])])


@slow
def test_regularisers_and_augmentation_strengths_train_and_are_recorded(workspace, tmp_path):
    from fastai.callback.mixup import CutMix, MixUp
    comp = competition.find()
    kw = dict(label_smoothing=0.1, mixup=0.4, min_scale=0.5, max_rotate=0, max_warp=0, flip=False)
    run = train.train(tc(**kw), quiet=True)
    cfg = json.loads((run / 'config.json').read_text())
    assert {k: cfg[k] for k in kw} == kw and cfg['cutmix'] == 0 and run.status == 'complete'
    learn, _ = training_learner(cfg, comp, tmp_path, '.')
    assert type(learn.loss_func).__name__ == 'LabelSmoothingCrossEntropyFlat' and learn.loss_func.func.eps == 0.1
    assert [type(cb) for cb in learn.cbs if isinstance(cb, (MixUp, CutMix))] == [MixUp]
    names = _tfm_names(learn)
    assert not {'flip_mat', 'rotate_mat', '_WarpCoord'} & set(names) and 'zoom_mat' in names
    crop = [t for t in learn.dls.train.after_batch.fs if type(t).__name__ == 'RandomResizedCropGPU']
    assert crop and crop[0].min_scale == 0.5
    plain, _ = training_learner(resolve(tc(), comp), comp, tmp_path, '.')   # the defaults are the reference's
    assert {'flip_mat', 'rotate_mat', '_WarpCoord', 'zoom_mat', 'Brightness'} <= set(_tfm_names(plain))
    assert type(plain.loss_func).__name__ == 'CrossEntropyLossFlat'
    assert not [cb for cb in plain.cbs if isinstance(cb, (MixUp, CutMix))]
    # CutMix, and label smoothing on each head of a two-headed model
    cut = train.train(tc(cutmix=1.0), quiet=True)
    assert json.loads((cut / 'config.json').read_text())['cutmix'] == 1.0 and cut.status == 'complete'
    two = train.train(tc(target='disease+variety', label_smoothing=0.2), quiet=True)
    learn, _ = training_learner(two.config, comp, tmp_path, '.')
    assert [h.func.eps for h in learn.loss_func.heads] == [0.2, 0.2] and two.status == 'complete'


@slow
def test_vit_trains_and_predicts_at_a_non_native_size(workspace):
    from comp.predict import predict
    run = train.train(tc(arch='test_vit', size=96, resize=('squish', 96)), quiet=True)
    assert run.config['size'] == [96, 96] and run.status == 'complete'
    sub = pd.read_csv(predict(run)['submission'], dtype=str)
    assert len(sub) == len(competition.find().test_ids())


@slow
def test_swin_trains_and_predicts_at_a_non_native_size(workspace):
    from comp.predict import load_learner, predict
    run = train.train(tc(arch=SWIN, pretrained=False, size=64, resize=('squish', 64)), quiet=True)
    assert run.config['size'] == [64, 64] and run.status == 'complete'
    learn, _, _ = load_learner(run)   # predict rebuilds the model at the run's size, not Swin's 224
    assert tuple(learn.model[0].model.patch_embed.img_size) == (64, 64)
    sub = pd.read_csv(predict(run)['submission'], dtype=str)
    assert len(sub) == len(competition.find().test_ids())


def test_resume_is_refused_while_the_run_trains_elsewhere_and_a_reused_pid_is_not_trusted(workspace, tiny_sample):
    from comp import machine
    p = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(60)'])
    try:
        run = fake_run(workspace, tiny_sample, status='running', pid=p.pid, started=machine.started(p.pid))
        assert run.status == 'running'
        with pytest.raises(CompError, match='still training'): train.train(resume=run.name, workdir=workspace)
        one_line(comp_cli('train', '--resume', run.name, cwd=workspace), 'still training')
        # the same pid, but not the process that started the run: it is gone
        rec = {**run.status_record(), 'started': machine.started(p.pid) - 1}
        run.status_file.write_text(json.dumps(rec))
        assert run.status == 'incomplete'
    finally:
        p.kill()
        p.wait()


@slow
def test_a_truncated_checkpoint_on_resume_is_one_line(trained):
    ws, run = trained
    copy = runs.Run(shutil.copytree(run.path, run.path.parent / (run.name + '-cut')))
    copy.checkpoint_file.write_bytes(copy.model_file.read_bytes()[:1000])
    copy.model_file.unlink()
    copy.result_file.unlink()
    copy.status_file.write_text(json.dumps({'status': 'incomplete', 'epochs_done': 1}))
    one_line(comp_cli('train', '--resume', copy.name, cwd=ws), 'checkpoint.pth cannot be read', 'delete it')
    assert copy.status == 'incomplete'   # said before its status changed: still resumable once the file is deleted
