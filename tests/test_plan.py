"""comp auto's plan without training: step costs worked out by hand, the fold and epoch ladder, and plans from made-up
probes at several budgets (fast; tests/test_auto.py plans from this machine's real probes too)."""
import pytest

from comp import plan as planning

# A probe as comp.probe writes it (the fields the plan reads), in seconds: round numbers, so costs can be worked out.
PROBE = dict(bs=10, train_batch_s=1.0, predict_batch_s=0.5, epoch_overhead_s=2.0, build_s=3.0, save_s=1.0, epochs=4,
             frozen_epochs=1)
PROBES = {'big': PROBE, 'small': {**PROBE, 'train_batch_s': 0.5, 'predict_batch_s': 0.25}}   # best first
N, N_TEST = 100, 50


def test_step_costs_worked_out_by_hand():
    # one run on the shared split: 20 validation images (2 batches), 80 training (8), 50 test (5)
    # epoch 8 x 1 + 2 x 0.5 + 2 = 11; test predictions 3 + 2.5; after the last epoch 1 + 1 + RECORD_S 3 + 5.5 = 10.5
    assert planning.step_costs(PROBE, 'train', 1, 4, N, N_TEST) == {
        'estimate_s': 3 + (4 + 1) * 11 + 10.5, 'epoch_s': 11, 'tail_s': 10.5, 'tta_s': 0}
    assert planning.step_costs(PROBE, 'train', 1, 4, N, N_TEST, tta=4)['tta_s'] == 3 + (1 + 2.5) * 5
    # 2-fold CV: 50 validation images per fold (5 batches); each fold's epoch 5 + 2.5 + 2 = 9.5
    cv = planning.step_costs(PROBE, 'cv', 2, 4, N, N_TEST)
    assert cv == {'estimate_s': 2 * (3 + 5 * 9.5 + 12), 'epoch_s': 9.5, 'tail_s': 12 + 5.5, 'tta_s': 0}
    # its refit trains on all 100 images (10 batches, no validation) and predicts the test set
    refit = planning.step_costs(PROBE, 'cv', 2, 4, N, N_TEST, tta=4, refit=True)
    assert refit['estimate_s'] == cv['estimate_s'] + 3 + 5 * 12 + 1 + 3 + 5.5
    assert refit['tta_s'] == 2 * (3 + 5 * 5) + 3 + 2.5 * 5
    assert planning.step_costs(PROBE, 'train', 1, 4, N, N_TEST, refit=True)['estimate_s'] == 68.5   # no refit of one run


def test_fold_ladder_and_levels():
    assert [planning.fold_ladder(k) for k in (10, 5, 4, 2, 1)] == [[10, 5, 3, 1], [5, 3, 1], [4, 3, 1], [2, 1], [1]]
    assert planning.levels(2) == [(2, 1), (2, 0.75), (2, 0.5), (1, 1), (1, 0.75), (1, 0.5), (1, 0.33), (1, 0.25), (1, 0)]
    assert planning.margin(1000) == 25


def budget_for(avail):
    """The budget that leaves `avail` seconds for the steps, after the final reserve and the margin."""
    return (avail + planning.FINAL_S + 5) / 0.98


def cost(arch, folds, frac, tta=0, refit=False):
    return planning._cost(planning._step(arch, PROBES[arch], folds, frac, N, N_TEST, 0.2, tta, refit))


def shape(plan): return [(s['arch'], s['kind'], s['folds'], s['epochs']) for s in plan['steps']]


def test_less_time_plans_fewer_epochs_then_folds_then_steps_within_the_budget():
    budgets = [10, budget_for(cost('small', 1, 0) + 0.5), budget_for(cost('big', 2, 0.5) + cost('small', 2, 0.5) + 0.5),
               budget_for(cost('big', 2, 1) + cost('small', 2, 0.75) + 0.5), 10 ** 5]
    plans = [planning.make_plan(PROBES, b, N, N_TEST, folds=2, tta=0) for b in budgets]
    for b, p in zip(budgets, plans): assert p['planned_s'] + p['margin_s'] <= b or not p['steps']
    assert [shape(p) for p in plans] == [
        [],
        [('small', 'train', 1, 1)],                                  # one epoch of the quickest, the last resort
        [('big', 'cv', 2, 2), ('small', 'cv', 2, 2)],                # half the epochs at 2 folds
        [('big', 'cv', 2, 4), ('small', 'cv', 2, 3)],                # time left over goes back to the best first
        [('big', 'cv', 2, 4), ('small', 'cv', 2, 4)]]
    assert plans[0]['skipped'] and planning._too_short({**plans[0], 'budget_s': 10, 'probe_s': 1}).startswith(
        'no candidate fits 10 s')


def test_tta_only_when_it_costs_no_training():
    full = cost('big', 2, 1) + cost('small', 2, 1)
    rich = planning.make_plan(PROBES, 10 ** 5, N, N_TEST, folds=2)
    assert rich['tta'] == planning.TTA and all(s['tta_s'] > 0 for s in rich['steps'])
    tight = planning.make_plan(PROBES, budget_for(full + 0.5), N, N_TEST, folds=2)   # room for the training only
    assert tight['tta'] == 0 and shape(tight) == shape(rich) and all(s['tta_s'] == 0 for s in tight['steps'])
    # nor costs a step: with 500 test images, TTA fits with the best recipe alone at the level both train at without it
    n_test = 500
    both = sum(planning._cost(planning._step(a, p, 2, 1, N, n_test, 0.2, 0)) for a, p in PROBES.items())
    assert shape(planning.make_plan(PROBES, budget_for(both + 0.5), N, n_test, folds=2)) == [
        ('big', 'cv', 2, 4), ('small', 'cv', 2, 4)]


def test_a_refit_is_costed_and_described():
    plain, refit = (planning.make_plan(PROBES, 10 ** 5, N, N_TEST, folds=2, tta=0, refit=r) for r in (False, True))
    assert shape(plain) == shape(refit) and all(s['refit'] for s in refit['steps'])
    assert all(b['estimate_s'] > a['estimate_s'] for a, b in zip(plain['steps'], refit['steps']))
    lines = planning.describe({**refit, 'budget_s': 3600, 'probe_s': 60, 'estimate_s': 600, 'margin_s': 77, 'asked': {'device': 'cpu'}})
    assert lines[0] == 'plan for 60.0 min on cpu (probes 60 s):'
    assert lines[1].startswith('  1. big: 2-fold CV + refit, 4 epochs, about ')
    assert lines[-1] == '  estimated 10.0 min of 60.0 min (margin 77 s)'
    one = planning.make_plan(PROBES, 10 ** 5, N, N_TEST, folds=1, tta=0, refit=True)
    assert shape(one) == [('big', 'train', 1, 4), ('small', 'train', 1, 4)] and not any('refit' in s for s in one['steps'])


@pytest.mark.parametrize('s, text', [(30, '30 s'), (600, '10.0 min'), (7200, '2.0 h'), (None, '0 s')])
def test_durations_read_as_people_say_them(s, text): assert planning._hm(s) == text
