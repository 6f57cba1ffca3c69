"""Knowledge distillation: a student trained on the training images with soft targets from a teacher ensemble's
out-of-fold probabilities (so the teacher never saw the image it labels), blended with the hard-label loss as timm's
distillation does (temperature-softened KL, scaled by T^2). The teacher is a CV group or a submission whose members
are CV groups; images it has no out-of-fold prediction for (pseudo-labelled ones, say) keep their hard label alone.

With `distill_test` the student also trains on the test images, their only target the teacher's test probabilities
(combined as its record combined them): no label of a test image is used, so this is transductive, as Kaggle allows."""
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


def test_targets(teacher, comp, workdir='.'):
    """{test image id: the teacher's test probabilities} (numpy rows in vocab order), combined as its record says."""
    import numpy as np
    from .pseudo import record_probs
    name, rec = teacher_record(teacher, workdir)
    _, probs, _ = record_probs(rec, f'--teacher {teacher}', workdir)
    return {i: np.asarray(p, 'float32') for i, p in zip(probs.index, probs.to_numpy())}


def test_rows(test, comp):
    """The test images as training rows (`data.dataloaders`' `extra`): the teacher's top class as their label, which
    only keeps fastai's blocks whole (their loss is the soft term alone: `loss`), and `distill_test` set."""
    import pandas as pd
    vocab = comp.vocab()
    ids = [i for i in comp.test_ids() if i in test]
    return pd.DataFrame({comp.layout.id_col: ids, LABEL: [vocab[int(test[i].argmax())] for i in ids],
                         'path': [comp.test_file(i) for i in ids], TEST: True})


TEST = 'distill_test'   # the column that marks test images among a student's training rows


def check(c, comp, workdir='.'):
    """A student's config checked against its teacher before the run exists; {'with': n, 'without': m}: how many of
    its training images get soft targets and how many keep their hard label alone; with `distill_test`, 'test': how
    many test images it trains on as well."""
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
    out = {'with': n, 'without': len(train) - n}
    if c.get('distill_test'):
        test, ids = test_targets(c['teacher'], comp, workdir), comp.test_ids()
        if set(test) != set(ids):
            raise ConfigError(f'--distill-test: the teacher {c["teacher"]} predicted other test images than {comp.path} '
                              f'holds ({len(set(ids) - set(test))} of its {len(ids)} have no prediction): use a teacher '
                              'trained on this competition')
        both = set(ids) & set(comp.train_df()[comp.layout.id_col])
        if both:
            raise ConfigError(f'--distill-test: {len(both)} test images are training images here too (pseudo-labelled '
                              'by comp pseudo?): distil the test images on the original competition, or drop --distill-test')
        out['test'] = len(ids)
    return out


def loss(pred, y, soft, has, T=2.0, alpha=0.5, eps=0.0, unlabelled=None):
    """The batch's distillation loss: per image (1 - alpha) x cross-entropy with the hard label + alpha x T^2 x
    KL(teacher || student at temperature T) where the teacher has a prediction (`has`), the cross-entropy alone
    elsewhere, and T^2 x KL alone for `unlabelled` images (test images: their label is the teacher's); averaged over
    the batch."""
    import torch
    import torch.nn.functional as F
    pred = pred.float()
    hard = F.cross_entropy(pred, y, reduction='none', label_smoothing=eps)
    t = soft.clamp_min(1e-8) ** (1 / T)   # the teacher's probabilities softened at T, as its logits / T would be
    t = t / t.sum(-1, keepdim=True)
    kl = (t * (t.log() - F.log_softmax(pred / T, -1))).sum(-1) * T * T
    out = torch.where(has, (1 - alpha) * hard + alpha * kl, hard)
    if unlabelled is not None: out = torch.where(unlabelled, kl, out)
    return out.mean()


def student(c, comp, workdir='.'):
    """What training a student of `c['teacher']` adds to a learner (comp.learner.training_learner): the test images as
    training rows (with `distill_test`; else None) and the callback that applies the teacher."""
    test = test_targets(c['teacher'], comp, workdir) if c.get('distill_test') else {}
    return (test_rows(test, comp) if test else None), callback(c, comp, workdir, test)


def callback(c, comp, workdir='.', test=None):
    """The fastai callback that trains a student of `c['teacher']`; `test`: the teacher's test probabilities of the
    test images the student also trains on (`test_targets`)."""
    from fastai.callback.core import Callback
    from fastai.callback.training import GradientAccumulation
    import numpy as np
    import torch

    soft, _ = soft_targets(c['teacher'], comp, workdir)
    test = test or {}

    class Distill(Callback):
        """Replaces the training loss with `loss`: each batch's soft targets are those of the rows the DataLoader drew
        (checked against the batch's own labels, so a mismatch stops training rather than teaching wrong targets)."""
        order, run_valid = GradientAccumulation.order - 1, False   # before accumulation scales the loss

        def before_fit(self):
            dl = self.dls.train
            ids = list(dl.items[comp.layout.id_col])
            vocab = list(self.dls.vocab)
            is_test = list(dl.items[TEST].eq(True)) if TEST in dl.items else [False] * len(ids)
            zero = np.zeros(len(vocab), 'float32')
            self.S = torch.from_numpy(np.stack([test[i] if t else soft.get(i, zero) for i, t in zip(ids, is_test)]).astype('float32'))
            self.unlabelled = torch.tensor(is_test)
            self.has = torch.tensor([i in soft for i in ids]) & ~self.unlabelled
            self.labels = torch.tensor([vocab.index(str(v)) for v in dl.items[LABEL]])
            rec = c.get('teacher_images', {})
            for what, n, expect in (('out-of-fold', int(self.has.sum()), rec.get('with')),
                                    ('test', int(self.unlabelled.sum()), rec.get('test', 0))):
                if expect is not None and n != expect:
                    raise ConfigError(f'--teacher {c["teacher"]}: its {what} predictions changed since the run began '
                                      f'({n} images have one, {expect} did): train anew')

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
                     c['distill_t'], c['distill_alpha'], c['label_smoothing'], self.unlabelled[self.rows].to(dev))
            self.learn.loss_grad, self.learn.loss = l, l.detach().clone()

    return Distill()
