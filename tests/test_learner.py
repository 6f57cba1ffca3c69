"""The learner a run trains and predicts with (comp.learner): pretrained weights from a file, a hub cache folder, or
resampled to another input size; gradient accumulation; the precision this machine can train in."""
import pytest
import timm
import torch

from comp import competition, learner
from comp.config import TrainConfig, resolve
from comp.errors import CompError, ConfigError
from comp.learner import build_learner, training_learner
from conftest import SWIN

slow = pytest.mark.slow


def tc(**kw):
    return TrainConfig(**{'arch': 'test_convnext', 'epochs': 1, 'workers': 0, **kw})


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


@slow
def test_gradient_accumulation_keeps_effective_batch(workspace, tmp_path):
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


def test_vit_pretrained_weights_load_at_a_non_native_size(workspace, tmp_path):
    # timm's own resizing: the 160 px weights' position embeddings resampled to 96 px (6x6 patches of 16)
    torch.manual_seed(5)
    body = timm.create_model('test_vit.r160_in1k', pretrained=False, num_classes=0)
    f = tmp_path / 'vit.pth'
    torch.save(body.state_dict(), f)
    c = resolve(tc(arch='test_vit', size=96, pretrained=True, weights=str(f)), competition.find())
    learn = build_learner(c, competition.find(), tmp_path, '.', for_training=True)
    loaded, saved = learn.model[0].model.state_dict(), body.state_dict()
    assert loaded['pos_embed'].shape[1] != saved['pos_embed'].shape[1]
    assert all(torch.equal(loaded[k], v) for k, v in saved.items() if k != 'pos_embed')


def test_swin_pretrained_weights_load_at_a_non_native_size(workspace, tmp_path):
    # timm pads Swin's 7x7 windows, so any size builds; at 64 px the last stages' feature maps (4x4, 2x2) are smaller
    # than a window, their windows shrink and timm resamples their relative position tables from the 224 px weights
    torch.manual_seed(5)
    body = timm.create_model(SWIN, pretrained=False, num_classes=0)
    f = tmp_path / 'swin.pth'
    torch.save(body.state_dict(), f)
    c = resolve(tc(arch=SWIN, size=64, pretrained=True, weights=str(f)), competition.find())
    learn = build_learner(c, competition.find(), tmp_path, '.', for_training=True)
    loaded, saved = learn.model[0].model.state_dict(), body.state_dict()
    resampled = [k for k, v in saved.items() if loaded[k].shape != v.shape]
    assert resampled and all(k.endswith('relative_position_bias_table') for k in resampled)
    assert all(torch.equal(loaded[k], v) for k, v in saved.items() if k not in resampled)


def test_precision_auto_is_fp32_on_a_cpu_and_a_gpu_precision_is_refused():
    if torch.cuda.is_available(): pytest.skip('this machine has a GPU')
    assert learner.precision('auto') == 'fp32' and learner.precision('fp32') == 'fp32'
    for p in ('fp16', 'bf16'):
        with pytest.raises(ConfigError, match=f'--precision {p} needs a CUDA GPU: use fp32 or auto'): learner.precision(p)
