"""comp distill: a student trained with a teacher's out-of-fold probabilities as soft targets (timm's KL blend), for
exactly the training images the teacher has one for; a normal run otherwise."""
import shutil

import pytest
import torch
import torch.nn.functional as F

from comp import competition, config, cv, data, distill, predict, pseudo, runs, train
from comp.config import split_key
from conftest import comp_cli, one_line


def test_the_loss_is_the_hard_loss_where_there_is_no_teacher_and_timms_blend_where_there_is():
    torch.manual_seed(0)
    pred, y = torch.randn(6, 4), torch.tensor([0, 1, 2, 3, 0, 1])
    soft = torch.softmax(torch.randn(6, 4), -1)
    none, every = torch.zeros(6, dtype=torch.bool), torch.ones(6, dtype=torch.bool)
    assert distill.loss(pred, y, soft, none) == pytest.approx(F.cross_entropy(pred, y).item())
    T, a = 3.0, 0.3
    # timm's distillation: KL between log-softmaxes at T (the teacher's given as probabilities here), times T^2
    kl = F.kl_div(F.log_softmax(pred / T, -1), F.log_softmax(soft.log() / T, -1), reduction='none', log_target=True).sum(-1)
    want = ((1 - a) * F.cross_entropy(pred, y, reduction='none') + a * T * T * kl).mean()
    assert distill.loss(pred, y, soft, every, T, a) == pytest.approx(want.item(), rel=1e-5)
    half = torch.tensor([True, False] * 3)
    mixed = torch.where(half, (1 - a) * F.cross_entropy(pred, y, reduction='none') + a * T * T * kl,
                        F.cross_entropy(pred, y, reduction='none')).mean()
    assert distill.loss(pred, y, soft, half, T, a) == pytest.approx(mixed.item(), rel=1e-5)


@pytest.fixture(scope='module')
def teacher(tiny_sample, tmp_path_factory):
    """(workspace, a 2-fold CV group of the tiny sample: the teacher, a single run)."""
    ws = tmp_path_factory.mktemp('distill')
    competition.record(competition.load(tiny_sample), ws)
    group = cv.cv(config.TrainConfig(arch='test_convnext', epochs=1, workers=0), folds=2, workdir=ws, quiet=True,
                  echo=lambda *a: None)
    single = train.train(config.TrainConfig(arch='test_convnext', epochs=1, workers=0), workdir=ws, quiet=True)
    return ws, group, single


@pytest.mark.slow
def test_a_student_gets_soft_targets_for_exactly_the_images_the_teacher_predicted_out_of_fold(teacher):
    ws, group, _ = teacher
    # pseudo-labelled test images join training: the teacher has no out-of-fold prediction for them
    sub = predict.predict(group, workdir=ws)['submission']
    dest, n_pseudo = pseudo.pseudo(sub, threshold=1e-6, dest=ws / 'with-pseudo', workdir=ws)
    student = train.train(config.TrainConfig(arch='test_convnext', epochs=1, workers=0, data=str(dest),
                                             teacher=group.name, distill_t=2.0), workdir=ws, quiet=True)
    c = student.config
    original = competition.find(workdir=ws)
    valid = data.valid_ids(original, ws, **split_key(c))
    real_train = [i for i in original.train_df()[original.layout.id_col] if i not in valid]
    assert c['teacher'] == group.name and c['teacher_images'] == {'with': len(real_train), 'without': n_pseudo}
    assert student.status == 'complete' and student.result['valid_error'] is not None
    # a normal run: it predicts like any other
    assert predict.predict(student, workdir=ws)['runs'] == [student.name]


@pytest.mark.slow
def test_comp_distill_and_its_bad_teachers(teacher, tmp_path):
    ws, group, single = teacher
    r = comp_cli('distill', group.name, '--arch', 'test_convnext', '--epochs', '1', '--workers', '0', cwd=ws)
    assert r.returncode == 0 and 'validation error' in r.stdout, r.stderr[-2000:]
    run = runs.find(ws / r.stdout.split('run: ')[1].split()[0])
    assert run.config['teacher'] == group.name and run.config['teacher_images']['with'] > 0
    before = {p.name for p in (ws / 'runs').iterdir()}
    one_line(comp_cli('distill', single.name, '--arch', 'test_convnext', cwd=ws), 'single run', 'comp cv')
    one_line(comp_cli('distill', 'no-such-teacher', '--arch', 'test_convnext', cwd=ws), 'no submission or CV group')
    one_line(comp_cli('distill', group.name, '--arch', 'test_convnext', '--mixup', '0.4', cwd=ws), '--mixup')
    # a group whose out-of-fold predictions are gone
    copy = tmp_path / 'ws'
    shutil.copytree(ws, copy)
    fold = runs.find(group.name, copy).members[0]
    fold.preds_file('valid').unlink()
    one_line(comp_cli('distill', group.name, '--arch', 'test_convnext', cwd=copy), 'out-of-fold predictions', fold.name)
    assert {p.name for p in (ws / 'runs').iterdir()} == before   # a refused teacher leaves no run behind


@pytest.mark.slow
def test_a_cv_group_of_students(teacher):
    ws, group, _ = teacher
    students = cv.cv(config.TrainConfig(arch='test_convnext', epochs=1, workers=0, teacher=group.name), folds=2,
                     workdir=ws, quiet=True, echo=lambda *a: None)
    for fold in students.members:
        c = fold.config
        n_train = len(competition.find(workdir=ws).train_df()) - len(data.valid_ids(competition.find(workdir=ws), ws, **split_key(c)))
        assert c['teacher'] == group.name and c['teacher_images'] == {'with': n_train, 'without': 0}
    assert students.result['valid_error'] is not None
