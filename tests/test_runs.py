"""The runs table (best validation error first, unfinished runs last), run status, and runs whose records are damaged
(a complete run without its model, a corrupt status.json)."""
import json
import os
import shutil

import pytest

from comp import runs
from conftest import comp_cli, ended_pid, fake_run, one_line


def _copy(run, name, **result):
    """A copy of `run` under another name with some result values replaced: a run with a known error."""
    dest = run.path.parent / name
    shutil.copytree(run.path, dest)
    copy = runs.Run(dest)
    copy.update_result(**result)
    return copy


@pytest.mark.slow
def test_runs_table_best_first_unfinished_last(two_runs):
    ws, a, b = two_runs
    lo, hi = sorted([a.result['valid_error'], b.result['valid_error']])
    worst = _copy(a, 'zz-worst', valid_error=hi + 0.5)
    best = _copy(b, '00-best', valid_error=lo / 2 - 0.01)
    unfinished = _copy(a, 'mm-unfinished')
    unfinished.result_file.unlink()
    unfinished.status_file.write_text(json.dumps({'status': 'running', 'epochs_done': 1, 'pid': ended_pid()}))
    try:
        rows = json.loads(comp_cli('runs', '--json', cwd=ws).stdout)
        names = [r['run'] for r in rows]
        assert names[0] == best.name and names[-2:] == [worst.name, unfinished.name], names
        assert {a.name, b.name} <= set(names[1:3])
        assert rows[-1]['status'] == 'incomplete' and rows[-1]['error'] is None  # its process has exited
        errs = [r['error'] for r in rows[:-1]]
        assert errs == sorted(errs)
        for col in ('arch', 'size', 'epochs', 'lr', 'precision', 'target', 'fold', 'error', 'tta_error', 'minutes', 'status'):
            assert col in rows[0]
        text = comp_cli('runs', cwd=ws).stdout
        assert text.splitlines()[0].split()[:3] == ['run', 'arch', 'size'] and text.splitlines()[1].startswith(best.name)
    finally:
        for r in (worst, best, unfinished): shutil.rmtree(r.path)


def test_a_running_run_whose_process_is_gone_is_incomplete(tmp_path):
    run = runs.create(tmp_path, {'name': 'x'})
    assert run.status == 'running'  # this process
    rec = run.status_record()
    rec['pid'] = ended_pid()
    run.status_file.write_text(json.dumps(rec))
    assert run.status == 'incomplete'
    run.set_status('complete')
    assert run.status == 'complete' and runs.find(run.name, tmp_path) == run
    assert oct(os.stat(run.config_file).st_mode & 0o777) == oct(0o666 & ~_umask())  # not mkstemp's 0600


def _umask():
    m = os.umask(0)
    os.umask(m)
    return m


def test_a_complete_run_missing_its_model_says_what_is_missing(workspace, tiny_sample):
    run = fake_run(workspace, tiny_sample, status='complete')
    run.write_vocab(['a'])
    run.write_result({'valid_error': 0.5})
    for argv in (('train', '--resume', run.name), ('predict', run.name)):
        r = comp_cli(*argv, cwd=workspace)
        one_line(r, 'model.pth is missing')
        assert 'already complete' not in r.stderr


def test_a_corrupt_record_is_one_line_and_breaks_no_other_run(workspace, tiny_sample):
    good, bad = fake_run(workspace, tiny_sample), fake_run(workspace, tiny_sample)
    bad.status_file.write_text('{"status": "runn')
    r = comp_cli('runs', '--json', cwd=workspace)
    assert r.returncode == 0, r.stderr
    rows = {row['run']: row for row in json.loads(r.stdout)}
    assert rows[good.name]['status'] == 'incomplete' and rows[bad.name]['status'] == 'unreadable'
    assert 'status.json' in rows[bad.name]['why']
    one_line(comp_cli('train', '--resume', bad.name, cwd=workspace), 'status.json is not valid JSON')


def test_a_record_of_the_wrong_shape_breaks_no_other_row(workspace, tiny_sample):
    # issue 27: valid JSON that is not an object (`[]`, `3`) in any of a run's records is that run's problem only
    good = fake_run(workspace, tiny_sample)
    bad = {f: fake_run(workspace, tiny_sample) for f in ('config.json', 'status.json', 'result.json')}
    for f, run in bad.items(): (run.path / f).write_text('[]' if f != 'status.json' else '3')
    for argv in (('runs', '--json'), ('runs', '--json', '--folds')):
        r = comp_cli(*argv, cwd=workspace)
        assert r.returncode == 0, r.stderr[-2000:]
        rows = {x['run']: x for x in json.loads(r.stdout)}
        assert rows[good.name]['status'] == 'incomplete' and rows[good.name]['arch'] == 'test_convnext'
        for f, run in bad.items(): assert rows[run.name]['status'] == 'unreadable' and f in rows[run.name]['why']
    r = comp_cli('runs', cwd=workspace)
    assert r.returncode == 0 and 'unreadable' in r.stdout, r.stderr[-2000:]
