"""Issue 3's training features, each with real fastai training of timm's tiny models."""
import json
import os
import signal
import subprocess
import sys
import time

import pandas as pd
import pytest
import timm
import torch

from comp import competition, runs, train
from comp.errors import CompError
from comp.train import TrainConfig, build_learner, resolve
from conftest import comp_cli

pytestmark = pytest.mark.slow


def tc(**kw):
    return TrainConfig(**{'arch': 'test_convnext', 'epochs': 1, 'workers': 0, **kw})


def test_lr_auto_runs_lr_find_and_trains_with_its_suggestion(workspace):
    run = train.train(tc(lr='auto'), quiet=True)
    found = json.loads((run / 'lr_find.json').read_text())
    assert set(found['suggestions']) == {'minimum', 'steep', 'valley', 'slide'}
    assert (run / 'lr_find.png').stat().st_size > 1000
    assert json.loads((run / 'result.json').read_text())['lr'] == pytest.approx(found['suggestions']['valley'])


def test_resume_keeps_the_learning_rate_lr_find_chose(workspace):
    run = train.train(tc(lr='auto', epochs=2, schedule='one_cycle'), quiet=True)
    chosen = json.loads((run / 'lr_find.json').read_text())
    # make the run look interrupted after epoch 1, with a different model state than lr_find saw
    (run / 'result.json').unlink()
    runs.set_status(run, 'running', epochs_done=1)
    import shutil
    shutil.copy(run / 'model.pth', run / 'checkpoint.pth')
    stamp = (run / 'lr_find.png').stat().st_mtime_ns
    train.train(None, resume=run.name, quiet=True)
    res = json.loads((run / 'result.json').read_text())
    assert res['lr'] == pytest.approx(chosen['suggestions']['valley'])
    assert (run / 'lr_find.png').stat().st_mtime_ns == stamp  # lr_find did not run again


def test_schedules_fine_tune_adds_a_frozen_epoch(workspace):
    one = train.train(tc(epochs=2, schedule='one_cycle'), quiet=True)
    ft = train.train(tc(epochs=2, schedule='fine_tune'), quiet=True)
    assert list(pd.read_csv(one / 'metrics.csv')['epoch']) == [1, 2]
    assert list(pd.read_csv(ft / 'metrics.csv')['epoch']) == [1, 2, 3]


def test_fine_tune_keeps_the_body_frozen_then_trains_it_with_comps_optimizer(workspace, tmp_path):
    comp = competition.find()
    learn, _ = train.training_learner(resolve(tc(), comp), comp, tmp_path, tmp_path)
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
    train.fit(train.no_bars(learn), 'fine_tune', 1, 1e-2)
    frozen, unfrozen = snaps
    n = len(convs)
    assert all(torch.equal(a, b) for a, b in zip(start[:n], frozen[:n]))       # body untouched while frozen
    assert any(not torch.equal(a, b) for a, b in zip(start[n:], frozen[n:]))   # the head trained
    assert any(not torch.equal(a, b) for a, b in zip(frozen[:n], unfrozen[:n]))  # then the body trained


def test_runs_validate_on_the_same_images(workspace):
    a = train.train(tc(), quiet=True)
    b = train.train(tc(arch='test_vit'), quiet=True)
    ids = lambda r: set(pd.read_csv(r / 'preds_valid.csv', dtype=str)['image_id'])
    assert ids(a) == ids(b)
    c = train.train(tc(folds=3, fold=1), quiet=True)
    assert ids(c) != ids(a)


def test_multi_target_trains_two_heads_and_predicts_disease(workspace):
    run = train.train(tc(target='disease+variety', epochs=2), quiet=True)
    m = pd.read_csv(run / 'metrics.csv')
    assert {'disease_error', 'variety_error'} <= set(m.columns)
    vocab = json.loads((run / 'vocab.json').read_text())
    assert len(vocab) == 10 and 'blast' in vocab
    valid = pd.read_csv(run / 'preds_valid.csv')
    assert list(valid.columns[2:]) == vocab
    from comp.predict import predict
    sub = pd.read_csv(predict(run), dtype=str)
    assert set(sub['label']) <= set(vocab)


def test_local_weights_file_is_really_loaded(workspace, tmp_path):
    torch.manual_seed(123)
    body = timm.create_model('test_convnext.r160_in1k', pretrained=False, num_classes=0)
    f = tmp_path / 'weights.pth'
    torch.save(body.state_dict(), f)
    c = resolve(tc(pretrained=True, weights=str(f)), competition.find())
    learn = build_learner(c, competition.find(), tmp_path, '.', for_training=True)
    loaded = learn.model[0].model.state_dict()
    saved = torch.load(f)
    assert all(torch.equal(loaded[k], v) for k, v in saved.items() if k in loaded)
    assert sum(k in loaded for k in saved) >= len(saved) - 2  # only the classifier head may differ
    # a fresh random model differs, so the equality above is the file's doing
    other = timm.create_model('test_convnext.r160_in1k', pretrained=False, num_classes=0).state_dict()
    assert not all(torch.equal(other[k], v) for k, v in saved.items() if k in other)
    # pretrained runs get the model's own normalization
    assert any(type(t).__name__ == 'Normalize' for t in learn.dls.after_batch.fs)


def test_weights_from_a_hub_cache_folder(workspace, tmp_path):
    # the layout huggingface_hub keeps (and Kaggle datasets of it carry): models--ORG--NAME/{refs,snapshots}
    from safetensors.torch import save_file
    torch.manual_seed(7)
    body = timm.create_model('test_convnext.r160_in1k', pretrained=False, num_classes=0)
    repo = tmp_path / 'hub' / 'models--timm--test_convnext.r160_in1k'
    snap = repo / 'snapshots' / ('a' * 40)
    snap.mkdir(parents=True)
    (repo / 'refs').mkdir()
    (repo / 'refs' / 'main').write_text('a' * 40)
    save_file({k: v.contiguous() for k, v in body.state_dict().items()}, snap / 'model.safetensors')
    c = resolve(tc(pretrained=True, weights=str(tmp_path / 'hub')), competition.find())
    learn = build_learner(c, competition.find(), tmp_path, '.', for_training=True)
    loaded = learn.model[0].model.state_dict()
    assert all(torch.equal(loaded[k], v) for k, v in body.state_dict().items() if k in loaded)
    with pytest.raises(CompError, match='no weights for'):
        build_learner(resolve(tc(arch='test_vit', pretrained=True, weights=str(tmp_path / 'hub')), competition.find()),
                      competition.find(), tmp_path, '.', for_training=True)


def test_no_network_and_no_weights_is_one_line_error(workspace, monkeypatch):
    monkeypatch.setenv('HF_HUB_OFFLINE', '1')
    monkeypatch.setenv('HF_HUB_CACHE', str(workspace / 'empty-hub-cache'))
    with pytest.raises(CompError, match='--no-pretrained'):
        train.train(tc(pretrained=True), quiet=True)
    r = comp_cli('train', '--arch', 'test_convnext', '--pretrained', '--epochs', '1', cwd=workspace,
                 env={'HF_HUB_OFFLINE': '1', 'HF_HUB_CACHE': str(workspace / 'empty-hub-cache')})
    assert r.returncode == 1 and 'Traceback' not in r.stderr and r.stderr.count('\n') == 1
    assert '--weights' in r.stderr


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
            run = found[0].parent
            break
        time.sleep(0.2)
    p.send_signal(signal.SIGKILL)
    p.wait()
    assert run is not None, 'training never got to epoch 2'
    assert runs.status(run) == 'incomplete'
    assert not (run / 'result.json').exists() and not (run / 'model.pth').exists()
    done = json.loads((run / 'status.json').read_text())['epochs_done']
    assert done < total
    r = comp_cli('runs', '--json', cwd=workspace)
    assert json.loads(r.stdout)[0]['status'] == 'incomplete'
    r = comp_cli('train', '--resume', run.name, cwd=workspace)
    assert r.returncode == 0, r.stderr[-2000:]
    assert runs.status(run) == 'complete'
    m = pd.read_csv(run / 'metrics.csv')
    assert list(m['epoch']) == list(range(1, total + 1))
    assert f'epoch {done + 1}:' in r.stdout and f'epoch {done}:' not in r.stdout
    r = comp_cli('train', '--resume', run.name, cwd=workspace)
    assert r.returncode == 1 and 'already complete' in r.stderr


def test_runs_table_best_first(workspace):
    a = train.train(tc(epochs=1), quiet=True)
    b = train.train(tc(epochs=2, lr=0.02), quiet=True)
    rows = json.loads(comp_cli('runs', '--json', cwd=workspace).stdout)
    errs = [r['error'] for r in rows]
    assert errs == sorted(errs) and {r['run'] for r in rows} == {a.name, b.name}
    for col in ('arch', 'size', 'epochs', 'lr', 'precision', 'target', 'fold', 'error', 'tta_error', 'minutes', 'status'):
        assert col in rows[0]
    text = comp_cli('runs', cwd=workspace).stdout
    assert text.splitlines()[0].split()[:3] == ['run', 'arch', 'size'] and a.name in text


def test_epoch_lines_when_not_a_terminal(workspace):
    r = comp_cli('train', '--arch', 'test_convnext', '--epochs', '2', '--workers', '0', cwd=workspace)
    assert r.returncode == 0, r.stderr[-2000:]
    lines = [l for l in r.stdout.splitlines() if l.startswith('epoch ')]
    assert [l.split(':')[0] for l in lines] == ['epoch 1', 'epoch 2']
    assert '█' not in r.stdout and 'validation error:' in r.stdout


def test_precision_this_machine_lacks_fails_before_any_run(workspace):
    from comp.errors import ConfigError
    if torch.cuda.is_available(): pytest.skip('this machine has a GPU')
    with pytest.raises(ConfigError, match='needs a CUDA GPU'):
        train.train(tc(precision='fp16'), quiet=True)
    assert not (workspace / 'runs').exists() or not any((workspace / 'runs').iterdir())


def test_gradient_accumulation_keeps_effective_batch(workspace, tmp_path):
    from comp.train import training_learner
    c = resolve(tc(bs=8, accum=3), competition.find())
    learn, precision = training_learner(c, competition.find(), tmp_path, '.')
    assert precision == 'fp32'
    acc = [cb for cb in learn.cbs if type(cb).__name__ == 'GradientAccumulation']
    assert len(acc) == 1 and acc[0].n_acc == 24
    learn.create_opt()
    steps, real_step = [], learn.opt.step
    learn.opt.step = lambda: (steps.append(1), real_step())  # count fastai's optimizer steps
    with learn.no_bar(), learn.no_logging(): learn.fit(1, 1e-4)
    n_batches = len(learn.dls.train)
    assert 0 < len(steps) <= n_batches // 3 + 1 < n_batches  # one step per 3 batches of 8
