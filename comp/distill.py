"""Knowledge distillation: a student trained on the training images with soft targets from a teacher ensemble's
out-of-fold probabilities (so the teacher never saw the image it labels), blended with the hard-label loss as timm's
distillation does (temperature-softened KL, scaled by T^2). The teacher is a CV group or a submission whose members
are CV groups; images it has no out-of-fold prediction for (pseudo-labelled ones, say) keep their hard label alone."""
from pathlib import Path

from .competition import LABEL
from .errors import ConfigError


def teacher_record(teacher, workdir='.'):
    """(name, {'runs': [...], 'weights': [...]}) of a teacher: a submission (its record) or a CV group; a ConfigError
    for anything else, or for a member without out-of-fold predictions of every training image."""
    from . import runs, submission
    p = Path(str(teacher))
    side = submission.sidecar_path(p) if p.suffix == '.csv' else Path(workdir) / submission.SUBMISSIONS_DIR / f'{p.name}.json'
    if side.is_file():
        from .files import read_json
        rec, name = read_json(side), side.stem
        if not rec.get('runs'): raise ConfigError(f'--teacher {teacher}: its record names no runs; use an ensemble of CV groups')
    else:
        try: run = runs.find(teacher, workdir)
        except Exception: raise ConfigError(f'--teacher {teacher}: no submission or CV group of that name here '
                                            '(comp runs lists the groups; submissions/ the ensembles)') from None
        rec, name = {'runs': [run.name], 'weights': [1.0]}, run.name
    for r in rec['runs']:
        run = runs.find(r, workdir)
        if not run.members:
            raise ConfigError(f'--teacher {teacher}: {"its member " if len(rec["runs"]) > 1 or r != name else ""}{r} is a '
                              'single run, whose predictions cover its validation images only: a teacher needs out-of-fold '
                              'predictions of every training image, from CV groups (comp cv ARCH --folds 5)')
        missing = [m.name for m in run.members if m is None or not m.has_preds('valid')]
        if missing:
            raise ConfigError(f'--teacher {teacher}: CV group {r} lacks the out-of-fold predictions of {", ".join(missing)}: '
                              f'finish it with `comp cv --resume {r}`')
    return name, rec


def soft_targets(teacher, comp, workdir='.'):
    """{image id: the teacher's out-of-fold probabilities} (numpy rows in vocab order) and the vocab."""
    import numpy as np
    import pandas as pd
    from . import runs
    from .blending import combine
    _, rec = teacher_record(teacher, workdir)
    id_col = comp.layout.id_col
    frames = []
    for r in rec['runs']:
        g = runs.find(r, workdir)
        frames.append(pd.concat([m.read_preds('valid', 0, id_col) for m in g.members]).set_index(id_col))
    vocab = runs.find(rec['runs'][0], workdir).vocab
    ids = sorted(set.intersection(*(set(f.index) for f in frames)))
    probs = combine(rec, [f.loc[ids, vocab].to_numpy() for f in frames])
    return {i: np.asarray(p, 'float32') for i, p in zip(ids, probs)}, vocab


def check(c, comp, workdir='.'):
    """A student's config checked against its teacher before the run exists; {'with': n, 'without': m}: how many of
    its training images get soft targets and how many keep their hard label alone."""
    from . import data
    from .config import split_key
    if comp.task != 'single' or c['target'] != 'disease':
        raise ConfigError('--teacher distils one label per image: use it on a single-label competition with --target disease')
    off = [o for o, on in (('--mixup', c['mixup']), ('--cutmix', c['cutmix']), (f'--procs {c["procs"]}', c['procs'] > 1)) if on]
    if off: raise ConfigError(f'--teacher with {off[0]} is not supported: drop one of them')
    soft, vocab = soft_targets(c['teacher'], comp, workdir)
    if list(vocab) != list(comp.vocab()):
        raise ConfigError(f'--teacher {c["teacher"]} predicts other classes than this competition\'s: use a teacher trained on it')
    valid = data.valid_ids(comp, workdir, **split_key(c))
    train = [i for i in comp.train_df()[comp.layout.id_col] if i not in valid]
    n = sum(i in soft for i in train)
    return {'with': n, 'without': len(train) - n}


def loss(pred, y, soft, has, T=2.0, alpha=0.5, eps=0.0):
    """The batch's distillation loss: per image (1 - alpha) x cross-entropy with the hard label + alpha x T^2 x
    KL(teacher || student at temperature T) where the teacher has a prediction (`has`), the cross-entropy alone
    elsewhere; averaged over the batch."""
    import torch
    import torch.nn.functional as F
    pred = pred.float()
    hard = F.cross_entropy(pred, y, reduction='none', label_smoothing=eps)
    t = soft.clamp_min(1e-8) ** (1 / T)   # the teacher's probabilities softened at T, as its logits / T would be
    t = t / t.sum(-1, keepdim=True)
    kl = (t * (t.log() - F.log_softmax(pred / T, -1))).sum(-1) * T * T
    return torch.where(has, (1 - alpha) * hard + alpha * kl, hard).mean()


def callback(c, comp, workdir='.'):
    """The fastai callback that trains a student of `c['teacher']`."""
    from fastai.callback.core import Callback
    from fastai.callback.training import GradientAccumulation
    import torch

    soft, _ = soft_targets(c['teacher'], comp, workdir)

    class Distill(Callback):
        """Replaces the training loss with `loss`: each batch's soft targets are those of the rows the DataLoader drew
        (checked against the batch's own labels, so a mismatch stops training rather than teaching wrong targets)."""
        order, run_valid = GradientAccumulation.order - 1, False   # before accumulation scales the loss

        def before_fit(self):
            dl = self.dls.train
            ids = list(dl.items[comp.layout.id_col])
            vocab = list(self.dls.vocab)
            self.S = torch.tensor([soft.get(i, [0.0] * len(vocab)) for i in ids], dtype=torch.float32)
            self.has = torch.tensor([i in soft for i in ids])
            self.labels = torch.tensor([vocab.index(str(v)) for v in dl.items[LABEL]])
            expect = c.get('teacher_images', {}).get('with')
            if expect is not None and int(self.has.sum()) != expect:
                raise ConfigError(f'--teacher {c["teacher"]}: its out-of-fold predictions changed since the run began '
                                  f'({int(self.has.sum())} training images have one, {expect} did): train anew')

        def before_batch(self):
            dl = self.learn.dl
            # fastai's DataLoader draws the epoch's order in this process and yields its batches in that order
            idxs = dl._DataLoader__idxs
            rows = torch.as_tensor(list(idxs[self.learn.iter * dl.bs:(self.learn.iter + 1) * dl.bs]))
            if not torch.equal(self.labels[rows], self.learn.yb[0].cpu()):
                raise RuntimeError('distillation lost track of which images the batch holds')
            self.rows = rows

        def after_loss(self):
            dev = self.learn.pred.device
            l = loss(self.learn.pred, self.learn.yb[0], self.S[self.rows].to(dev), self.has[self.rows].to(dev),
                     c['distill_t'], c['distill_alpha'], c['label_smoothing'])
            self.learn.loss_grad, self.learn.loss = l, l.detach().clone()

    return Distill()
