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
    n = run.config['teacher_images']['with']
    assert f'distilling from {group.name} (T 2, alpha 0.5): {n} training images' in r.stdout
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


def test_the_loss_of_a_test_image_is_the_teachers_term_alone():
    torch.manual_seed(1)
    pred, y = torch.randn(4, 3), torch.tensor([0, 1, 2, 0])
    soft = torch.softmax(torch.randn(4, 3), -1)
    has, test = torch.tensor([True, True, False, False]), torch.tensor([False, False, False, True])
    T, a = 2.0, 0.25
    kl = F.kl_div(F.log_softmax(pred / T, -1), F.log_softmax(soft.log() / T, -1), reduction='none', log_target=True).sum(-1)
    ce = F.cross_entropy(pred, y, reduction='none')
    want = torch.stack([(1 - a) * ce[0] + a * T * T * kl[0], (1 - a) * ce[1] + a * T * T * kl[1], ce[2], T * T * kl[3]])
    assert distill.loss(pred, y, soft, has, T, a, unlabelled=test) == pytest.approx(want.mean().item(), rel=1e-5)


@pytest.mark.slow
def test_a_student_also_learns_the_teachers_test_probabilities(teacher):
    from comp.competition import LABEL
    from comp.learner import training_learner
    ws, group, _ = teacher
    comp_ = competition.find(workdir=ws)
    student = train.train(config.TrainConfig(arch='test_convnext', epochs=1, workers=0, teacher=group.name,
                                             distill_test=True), workdir=ws, quiet=True)
    c, id_col = student.config, comp_.layout.id_col
    # the count is checked again by the callback while training: a run without the test rows would have failed
    assert student.status == 'complete' and c['distill_test'] and c['teacher_images']['test'] == len(comp_.test_ids())
    # what it trained on: every test image, labelled by the group's fold-averaged test probabilities
    test = predict.predictions(group, workdir=ws)[0].set_index(id_col)[group.vocab]
    learn, _ = training_learner(c, comp_, student, ws, distill.student(c, comp_, ws))
    items = learn.dls.train.items
    rows = items[items[distill.TEST].eq(True)].set_index(id_col)
    assert sorted(rows.index) == sorted(test.index)
    assert (rows[LABEL] == test.idxmax(axis=1).loc[rows.index]).all()
    cb = next(cb for cb in learn.cbs if type(cb).__name__ == 'Distill')
    cb.before_fit()
    at = [list(items[id_col]).index(i) for i in rows.index]
    assert torch.allclose(cb.S[at], torch.tensor(test.loc[rows.index].to_numpy(), dtype=torch.float32), atol=1e-6)
    assert cb.unlabelled[at].all() and not cb.has[at].any() and int(cb.unlabelled.sum()) == len(test)
    # the validation images are the split's, untouched; the student predicts like any run
    assert set(learn.dls.valid.items[id_col]) == data.valid_ids(comp_, ws, **split_key(c))
    assert predict.predict(student, workdir=ws)['runs'] == [student.name]


@pytest.mark.slow
def test_distilling_test_images_refuses_what_it_cannot_do(teacher):
    ws, group, _ = teacher
    one_line(comp_cli('train', '--arch', 'test_convnext', '--distill-test', cwd=ws), '--distill-test', '--teacher')
    sub = predict.predict(group, workdir=ws)['submission']
    dest, _ = pseudo.pseudo(sub, threshold=1e-6, dest=ws / 'pseudo-for-test', workdir=ws)
    before = {p.name for p in (ws / 'runs').iterdir()}
    one_line(comp_cli('distill', group.name, '--arch', 'test_convnext', '--distill-test', '--data', str(dest), cwd=ws),
             '--distill-test', 'training images here too')
    assert {p.name for p in (ws / 'runs').iterdir()} == before
