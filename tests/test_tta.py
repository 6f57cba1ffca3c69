"""Test-time augmentation (comp.tta): the result of fastai's Learner.tta, with each image decoded once where it can be."""
import pandas as pd
import pytest

from comp import competition, predict
from comp.cache import cache_of
from comp.config import TrainConfig, resolve
from comp.learner import build_learner
from comp.tta import tta


@pytest.mark.slow
def test_tta_equals_fastai(two_runs):
    from fastai.vision.all import set_seed
    ws, a, _ = two_runs
    learn, comp, _ = predict.load_learner(a, ws)
    dl = learn.dls.valid.new(shuffle=False, drop_last=False)
    set_seed(5)
    ref, _ = learn.tta(dl=dl, n=3, beta=0.3)
    set_seed(5)
    ours = tta(learn, dl, n=3, beta=0.3)
    assert torch_close(ref, ours)
    plain, _ = learn.get_preds(dl=dl)
    assert not torch_close(plain, ours)  # the augmented passes really changed something


@pytest.mark.parametrize('method', ['pad', 'crop'])
def test_tta_with_random_item_resizes_still_equals_fastai(workspace, tmp_path, method):
    # fastai places padded and cropped images at random per TTA pass: comp must keep that, not replay one decode
    from fastai.vision.all import set_seed
    c = resolve(TrainConfig(arch='test_convnext', resize=(method, (96, 72)), workers=0), competition.find())
    learn = build_learner(c, competition.find(), tmp_path, '.')
    dl = learn.dls.valid.new(shuffle=False, drop_last=False)
    set_seed(3)
    ref, _ = learn.tta(dl=dl, n=2)
    set_seed(3)
    assert torch_close(ref, tta(learn, dl, n=2))


@pytest.mark.parametrize('method', ['pad', 'crop'])
def test_tta_on_the_test_set_decodes_each_image_once_with_fastais_result(workspace, tmp_path, method):
    # the convnext recipes pad: their TTA must read each image once, and still equal plain fastai's
    from PIL import Image
    from fastai.vision.all import set_seed
    comp = competition.find()
    c = resolve(TrainConfig(arch='test_convnext', resize=(method, (96, 72)), workers=0), comp)
    learn = build_learner(c, comp, tmp_path, '.')  # a predicting learner, as `comp predict` loads
    plain = build_learner({**c, 'cache': False}, comp, tmp_path, '.')
    plain.model.load_state_dict(learn.model.state_dict())
    cache = cache_of(learn.dls.valid.dataset)
    assert cache is not None and cache_of(plain.dls.valid.dataset) is None
    landscape = lambda paths: sum(w > h for w, h in (Image.open(p).size for p in paths))
    dls = {'test': (predict.test_dl(learn, comp), predict.test_dl(plain, comp),
                    [comp.path / comp.layout.test_dir / i for i in comp.test_ids()]),
           'valid': (learn.dls.valid.new(shuffle=False, drop_last=False), plain.dls.valid.new(shuffle=False, drop_last=False),
                     [comp.path / p for p in learn.dls.valid.dataset.items['path']])}
    # the sample's landscape photos are in the training split: them and a few portraits, as a dl to predict
    tr = learn.dls.train.dataset.items
    wide = tr['path'].map(lambda p: landscape([comp.path / p]) == 1)
    unread = tr['path'].map(lambda p: cache.done[cache.index[str(comp.path / p)]] == 0)  # building read one
    some = pd.concat([tr[wide], tr[~wide & unread].head(10)])
    dls['landscape'] = (learn.dls.test_dl(some), plain.dls.test_dl(some), [comp.path / p for p in some['path']])
    for name, (dl, plain_dl, paths) in dls.items():
        set_seed(3)
        ref, _ = plain.tta(dl=plain_dl, n=2)
        set_seed(3)
        decodes, reads = cache.decodes_count, cache.reads_count
        assert torch_close(ref, tta(learn, dl, n=2)), name
        moved = landscape(paths)
        # a portrait photo is decoded once; a landscape one, which placement moves, in every pass (2 + 1)
        assert cache.decodes_count - decodes == len(paths) + 2 * moved, name
        # with no such photo, every pass is replayed from one read; with one, fastai's passes read the cache
        assert cache.reads_count - reads == len(paths) * (1 if moved == 0 else 1 + 3), name
    assert landscape(dls['landscape'][2]) > 0 and landscape(dls['test'][2]) == 0  # both branches ran


def torch_close(a, b):
    import torch
    return torch.allclose(torch.as_tensor(a).float(), torch.as_tensor(b).float(), atol=1e-6)
