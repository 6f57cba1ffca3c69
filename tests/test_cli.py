"""The command line as a user runs it: a subprocess of the installed `comp`."""
import subprocess
import sys

import pandas as pd
import pytest

from conftest import comp_cli


def test_help_lists_every_command_without_heavy_imports():
    r = comp_cli('--help')
    assert r.returncode == 0
    for cmd in ('sample', 'demo', 'train', 'predict', 'score', 'validate', 'runs', 'zoo'):
        assert f'  {cmd} ' in r.stdout, cmd
    code = ('import sys; sys.argv=["comp","--help"]; import comp.cli as c\n'
            'try: c.main()\nexcept SystemExit: pass\n'
            'heavy=[m for m in ("fastai","torch","timm","kaggle","pandas") if m in sys.modules]\n'
            'print("HEAVY", heavy)')
    out = subprocess.run([sys.executable, '-c', code], capture_output=True, text=True).stdout
    assert 'HEAVY []' in out, out


def test_no_competition_is_one_line_error(tmp_path):
    r = comp_cli('train', '--arch', 'test_convnext', cwd=tmp_path)
    assert r.returncode == 1
    assert r.stderr.strip().count('\n') == 0 and 'Traceback' not in r.stderr
    assert 'comp sample DIR' in r.stderr


def test_debug_variable_shows_the_traceback_of_the_same_error(workspace):
    plain = comp_cli('score', 'x.csv', cwd=workspace)
    assert plain.returncode == 1 and plain.stderr == 'error: x.csv: no such file\n'
    r = comp_cli('score', 'x.csv', cwd=workspace, env={'COMP_DEBUG': '1'})
    assert r.returncode == 1 and r.stderr.startswith('Traceback')
    assert r.stderr.rstrip().splitlines()[-1] == 'comp.errors.SubmissionError: x.csv: no such file'


def test_a_bad_pretrained_tag_is_one_line(workspace):
    r = comp_cli('train', '--arch', 'convnext_small.nosuchtag', cwd=workspace)
    assert r.returncode == 1 and 'Traceback' not in r.stderr and r.stderr.count('\n') == 1
    assert "convnext_small has no pretrained tag 'nosuchtag'" in r.stderr and 'fb_in22k' in r.stderr
    assert not (workspace / 'runs').exists()


def test_unknown_arch_suggests_close_match(workspace):
    r = comp_cli('train', '--arch', 'convnext_smal', cwd=workspace)
    assert r.returncode == 1 and 'did you mean convnext_small' in r.stderr
    assert not (workspace / 'runs').exists() or not any((workspace / 'runs').iterdir())


def test_sample_refuses_non_empty_folder_and_keeps_it(tmp_path):
    d = tmp_path / 'd'
    d.mkdir()
    (d / 'mine.txt').write_text('keep me')
    r = comp_cli('sample', d, '--scale', '0.005', cwd=tmp_path)
    assert r.returncode == 1 and 'not empty' in r.stderr
    assert (d / 'mine.txt').read_text() == 'keep me' and len(list(d.iterdir())) == 1


def test_validate_and_score_cli(workspace, tiny_sample):
    sol = pd.read_csv(tiny_sample / 'solution.csv', dtype=str)
    good = workspace / 'good.csv'
    sol.sample(frac=1, random_state=0).to_csv(good, index=False)  # shuffled order is fine
    r = comp_cli('validate', good, cwd=workspace)
    assert r.returncode == 0 and 'valid' in r.stdout
    r = comp_cli('score', good, cwd=workspace)
    assert r.returncode == 0 and 'accuracy: 1.0000' in r.stdout
    bad = workspace / 'bad.csv'
    sol.iloc[1:].to_csv(bad, index=False)
    r = comp_cli('validate', bad, cwd=workspace)
    assert r.returncode == 1 and '1 test ids are missing: 200001.jpg' in r.stderr


@pytest.mark.slow
def test_demo_prints_submission_and_accuracy(tmp_path):
    # Once: a second demo retrains both runs (3-4 more minutes) and only re-reads the sample it already wrote.
    for _ in range(1):
        r = comp_cli('demo', '--dir', tmp_path / 'demo', cwd=tmp_path)
        assert r.returncode == 0, r.stderr[-2000:]
        lines = dict(l.split(': ', 1) for l in r.stdout.splitlines() if ': ' in l and l.split(':')[0] in ('submission', 'accuracy'))
        sub = pd.read_csv(lines['submission'], dtype=str)  # an absolute path under --dir
        assert str(tmp_path / 'demo' / 'submissions') in lines['submission'] and len(sub) > 0
        assert float(lines['accuracy']) >= 0.6
        assert r.stdout.count(': accuracy ') == 2 and '(with TTA ' in r.stdout and 'ensemble accuracy: ' in r.stdout
