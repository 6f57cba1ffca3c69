"""A fastai Learner from a resolved config, for training and for prediction: DataLoaders, the timm model and its
weights, the optimizer, precision, progress output; and the validation predictions and error metric of a learner."""
from pathlib import Path

from . import data, zoo
from .competition import LABEL, VALUE
from .config import TARGETS, split_key
from .errors import CompError, ConfigError


def build_learner(c, comp, run, workdir, for_training=False, extra=None):
    """DataLoaders and a fastai learner for a resolved config; weights are loaded only when training.

    A learner not for training predicts: its decode-once cache holds the test and validation images. `extra`: more
    training rows (`data.dataloaders`)."""
    from fastai.vision.all import Normalize, vision_learner
    valid = data.valid_ids(comp, workdir, **split_key(c))
    targets = TARGETS[c['target']]
    test = () if for_training else list(data.test_items(comp)['path'])
    dls = data.dataloaders(comp, valid, c['size'], c['resize'], c['bs'], targets, c['workers'], c['seed'],
                           root=c['images'], cache=c['cache'], test=test, aug=data.aug_options(c),
                           drop=data.drop_ids(c.get('drop'), comp) if for_training else (),
                           extra=extra if for_training else None)
    kw = {}
    if len(targets) > 1:
        from .callbacks import MultiTargetLoss, multi_target_metrics
        sizes = [len(v) for v in dls.vocab]
        kw.update(n_out=sum(sizes), loss_func=MultiTargetLoss(sizes, c['label_smoothing']),
                  metrics=multi_target_metrics(sizes, targets))
    elif comp.task == 'single' and comp.metric == 'accuracy':
        from fastai.vision.all import LabelSmoothingCrossEntropyFlat, error_rate
        kw['metrics'] = error_rate
        if c['label_smoothing']: kw['loss_func'] = LabelSmoothingCrossEntropyFlat(eps=c['label_smoothing'])
    else:   # the loss is the block's own (cross-entropy, BCE, MSE); the epoch's metric the competition's, as an error
        kw['metrics'] = competition_error(comp, list(dls.vocab) if comp.task != 'regression' and comp.task != 'ordinal' else [VALUE])
        if comp.task == 'single' and c['label_smoothing']:
            from fastai.vision.all import LabelSmoothingCrossEntropyFlat
            kw['loss_func'] = LabelSmoothingCrossEntropyFlat(eps=c['label_smoothing'])
        if comp.task in ('regression', 'ordinal'):
            lo, hi = comp.layout.range
            pad = 0.05 * (hi - lo) if comp.task == 'regression' else 0.5   # a sigmoid reaches neither end
            kw['y_range'] = (lo - pad, hi + pad)
    fixed = zoo.fixed_input_size(c['arch'])
    if fixed and tuple(c['size']) != fixed:
        # ViT / Swin at another size: timm builds the model for it and resamples the pretrained position embeddings
        kw['img_size'] = tuple(c['size'])
    overlay = {}   # on timm's pretrained config of the model
    if zoo.features_nhwc(c['arch']):
        # Swin's features are (batch, height, width, channels), which fastai's pooled head would pool on the wrong
        # axes: without a pool size in its config fastai takes timm's own pooled output and adds no pooling
        overlay['pool_size'] = None
    pretrained = bool(c['pretrained']) and for_training
    if pretrained and c['weights']: overlay['file'] = str(zoo.weights_file(c['arch'], c['weights']))
    elif pretrained: zoo.check_hub(c['arch'])
    if overlay: kw['pretrained_cfg_overlay'] = overlay
    try:
        learn = vision_learner(dls, c['arch'], pretrained=pretrained, normalize=False, path=Path(run), model_dir='.',
                               opt_func=adamw, **kw)
    except (OSError, RuntimeError, ValueError) as e:
        if not pretrained: raise
        raise CompError(f'could not load pretrained weights for {c["arch"]} ({type(e).__name__}): {zoo.NO_WEIGHTS}') from e
    norm = c['normalize']
    if norm:  # the pretrained model's own statistics, recorded in the config
        dls.add_tfms([Normalize.from_stats(norm['mean'], norm['std'])], 'after_batch')
    return learn


def training_learner(c, comp, run, workdir, student=None):
    """The learner a run trains: weights loaded, mixed precision, channels-last and gradient accumulation applied.
    `student`: a distilled student's (test rows to train on as well, or None; the callback that applies its teacher),
    from comp.distill.student."""
    import torch
    from fastai.vision.all import GradientAccumulation
    learn = build_learner(c, comp, run, workdir, for_training=True, extra=student[0] if student else None)
    p = precision(c['precision'])
    if p == 'fp16': learn.to_fp16()
    elif p == 'bf16': learn.to_bf16()
    if c['channels_last']:
        learn.model = learn.model.to(memory_format=torch.channels_last)
    # fastai counts samples: one optimizer step per bs x accum images keeps the recipe's effective batch.
    if c['accum'] > 1: learn.add_cb(GradientAccumulation(c['bs'] * c['accum']))
    if c['mixup']:
        from fastai.callback.mixup import MixUp
        learn.add_cb(MixUp(c['mixup']))
    if c['cutmix']:
        from fastai.callback.mixup import CutMix
        learn.add_cb(CutMix(c['cutmix']))
    if student is not None: learn.add_cb(student[1])
    if c['sync_free']:
        # No read back to the CPU per batch, so the CPU prepares the next batch while the GPU trains (comp.loop).
        # Opt-in until its GPU figures are measured (bench/README.md); on a CPU there is nothing to overlap.
        from .loop import sync_free
        sync_free(learn)
    if c['procs'] > 1:
        from .distributed import to_distributed
        to_distributed(learn)
    return learn, p


def save_model(path, learn):
    """The learner's weights and optimizer as fastai's `Learner.save` writes them, but atomically: a full disk or a
    kill leaves no half-written model."""
    from fastai.learner import save_model as fastai_save
    from .files import atomic_path
    with atomic_path(path) as tmp: fastai_save(tmp, learn.model, getattr(learn, 'opt', None))


def adamw(params, **kw):
    """fastai's Adam (betas 0.9/0.99, eps 1e-5, decoupled weight decay 0.01) as PyTorch's AdamW, in fastai's wrapper.

    fastai's own Adam steps each parameter in Python, several small kernels apiece; on a GPU that loop, not the
    model, set the pace (bench/README.md). PyTorch's AdamW steps all parameters in a few multi-tensor kernels.
    Unlike fastai's, it also decays norm and bias weights."""
    import torch
    from fastai.optimizer import OptimWrapper
    return OptimWrapper(params, opt=torch.optim.AdamW, betas=(0.9, 0.99), eps=1e-5, weight_decay=0.01, **kw)


def precision(p):
    """The precision a run trains in: `p`, or for 'auto' bf16 / fp16 on a CUDA GPU and fp32 on CPU."""
    import torch
    if p != 'auto':
        if p != 'fp32' and not torch.cuda.is_available():
            raise ConfigError(f'--precision {p} needs a CUDA GPU: use fp32 or auto on this machine')
        if p == 'bf16' and not torch.cuda.is_bf16_supported():
            raise ConfigError('this GPU has no bf16: use --precision fp16 or auto')
        return p
    if not torch.cuda.is_available(): return 'fp32'
    return 'bf16' if torch.cuda.is_bf16_supported() else 'fp16'


def no_bars(learn):
    """Off a terminal (CI, logs, a notebook's saved output): RunLog's one line per epoch replaces fastprogress's bars
    and fastai's raw lists."""
    from fastai.vision.all import ProgressCallback
    from fastcore.basics import noop
    learn.remove_cb(ProgressCallback)
    learn.logger = noop
    return learn


def valid_preds(learn, comp, vocab, dl=None, probs=None):
    """Validation probabilities (computed on `dl`, else given as `probs`) with image ids and true labels, as a DataFrame."""
    import pandas as pd
    if probs is None: probs, _ = learn.get_preds(dl=dl or learn.dls.valid)
    items = learn.dls.valid.items
    df = pd.DataFrame(probs[:, :len(vocab)].numpy(), columns=vocab)
    truth = items[LABEL]
    df.insert(0, LABEL, (truth.map('{:g}'.format) if truth.dtype.kind == 'f' else truth).to_numpy())
    df.insert(0, comp.layout.id_col, items[comp.layout.id_col].to_numpy())
    return df


def competition_error(comp, vocab):
    """A fastai metric: the competition's metric of the validation epoch, as an error (lower is better), named `error`."""
    import pandas as pd
    from fastai.metrics import AccumMetric

    def error(preds, targs):
        out = preds.float().numpy()
        if comp.task == 'single': truth = [vocab[int(i)] for i in targs]
        elif comp.task == 'multi': truth = [' '.join(v for v, t in zip(vocab, row) if t > 0.5) for row in targs.numpy()]
        else: truth = [f'{float(t):g}' for t in targs.reshape(-1)]
        frame = pd.DataFrame(out[:, :len(vocab)], columns=vocab).assign(**{LABEL: truth})
        return comp.error(frame, vocab)
    return AccumMetric(error, flatten=False, to_np=False, invert_arg=False, activation='softmax' if comp.task == 'single' else
                       ('sigmoid' if comp.task == 'multi' else 'no'))


def error(valid, vocab, comp=None):
    """The competition's metric (accuracy for Paddy) as an error, lower is better, of a validation frame (columns: id,
    label, one per vocab entry); thresholds are chosen on the frame itself."""
    if comp is None:   # error rate: what a run of a single-label competition without a record of its metric had
        return float((valid[vocab].to_numpy().argmax(1) != valid[LABEL].map(vocab.index).to_numpy()).mean())
    return comp.error(valid, vocab)
