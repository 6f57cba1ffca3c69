"""comp report: pages for a run, a CV group, a submission and the runs table, opened in a real headless browser
(chromium) and checked against the runs' stored predictions."""
import os
import shutil
import subprocess
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import confusion_matrix

from comp import competition, cv, ensemble, report
from comp.competition import Competition, Layout
from comp.config import TrainConfig
from comp.errors import CompError
from comp.files import write_text
from conftest import comp_cli, one_line

slow = pytest.mark.slow   # the tests that train (or read the session's trained runs)


def chromium():
    """The headless browser; without one the test is skipped here and fails in CI (.ci/run installs it)."""
    exe = shutil.which('chromium') or shutil.which('chromium-browser')
    if exe: return exe
    if os.environ.get('CI') == 'true': pytest.fail('chromium is not installed: .ci/run installs it (apt-get install chromium)')
    pytest.skip('chromium is not installed (apt-get install chromium): the pages cannot be opened in a browser')


class Dom(HTMLParser):
    """What the tests read from a page as the browser left it: its tables (cell texts by row), its grids (the ids of
    their tiles and whether each has an image), links, the errors the page met."""
    def __init__(self, text):
        super().__init__()
        self.tables, self.grids, self.links, self.imgs, self.errors, self.notes = {}, {}, [], [], None, {}
        self._table = self._grid = self._row = self._cell = None
        self._depth = 0
        self.feed(text)

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if tag == 'body': self.errors = a.get('data-errors', '')
        if tag == 'table' and a.get('id'): self._table = self.tables.setdefault(a['id'], [])
        if tag == 'tr' and self._table is not None: self._row = []
        if tag in ('td', 'th') and self._row is not None: self._cell = ''
        if tag == 'div' and 'grid' in (a.get('class') or '').split(): self._grid, self._depth = self.grids.setdefault(a['id'], []), 0
        if tag == 'div' and self._grid is not None: self._depth += 1
        if tag == 'figure' and self._grid is not None: self._grid.append([a['data-id'], False])
        if tag == 'img':
            self.imgs.append(a)
            if self._grid: self._grid[-1][1] = a.get('src', '').startswith('data:image/')
        if tag == 'a': self.links.append(a.get('href'))
        if tag == 'p' and a.get('id'): self.notes[a['id']] = a

    def handle_endtag(self, tag):
        if tag in ('td', 'th') and self._cell is not None: self._row.append(self._cell.strip()); self._cell = None
        if tag == 'tr' and self._row is not None: self._table.append(self._row); self._row = None
        if tag == 'table': self._table = None
        if tag == 'div' and self._grid is not None:
            self._depth -= 1
            if not self._depth: self._grid = None

    def handle_data(self, data):
        if self._cell is not None: self._cell += data

    def rows(self, id):
        """A table's body rows as dicts by header."""
        head, *body = self.tables[id]
        return [dict(zip(head, r)) for r in body]

    def tiles(self, id): return [i for i, _ in self.grids.get(id, [])]


def load(page):
    """The page opened in headless chromium: its DOM after loading, checked for console and page errors."""
    r = subprocess.run([chromium(), '--headless', '--disable-gpu', '--no-sandbox', '--enable-logging=stderr', '--v=0',
                        '--dump-dom', Path(page).resolve().as_uri()], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr[-2000:]
    console = [l for l in r.stderr.splitlines() if 'CONSOLE' in l]
    assert not console, console
    dom = Dom(r.stdout)
    assert dom.errors == '', dom.errors   # scripts and images that failed to load, as the page recorded them
    assert all(i['src'].startswith('data:image/') for i in dom.imgs)   # nothing fetched from elsewhere
    return dom


def stored_valid(runs_):
    """The validation probabilities the runs stored, one frame (a CV group's folds together)."""
    return pd.concat([pd.read_csv(r / 'preds_valid.csv', dtype={'image_id': str, 'label': str}) for r in runs_])


def check_mistakes(dom, valid, vocab):
    """The confusion matrix, per-class table and top-loss grid hold what the stored probabilities say."""
    truth, pred = valid['label'].to_numpy(), np.array(vocab)[valid[vocab].to_numpy().argmax(1)]
    cm = confusion_matrix(truth, pred, labels=vocab)
    shown = np.array([[int(v) for v in row[1:]] for row in dom.tables['confusion'][1:]])
    assert [row[0] for row in dom.tables['confusion'][1:]] == vocab
    np.testing.assert_array_equal(shown, cm)
    per = {r['class']: r for r in dom.rows('per-class')}
    support = valid['label'].value_counts()
    assert {c: int(r['support']) for c, r in per.items()} == {c: int(support.get(c, 0)) for c in vocab}
    for c in vocab:   # recall: the right images of the class over its images
        if support.get(c, 0): assert float(per[c]['recall']) == pytest.approx(((truth == c) & (pred == c)).sum() / support[c], abs=1e-4)
    P = valid[vocab].to_numpy()
    P = P / P.sum(1, keepdims=True)
    loss = -np.log(P[np.arange(len(valid)), [vocab.index(t) for t in truth]])
    top = valid['image_id'].to_numpy()[np.argsort(-loss)[:report.TOP]]
    assert dom.tiles('top-losses') == list(top)
    assert all(has_img for _, has_img in dom.grids['top-losses'])
    pairs = dom.rows('most-confused')
    if pairs: assert int(pairs[0]['images']) == max(cm[i, j] for i in range(len(vocab)) for j in range(len(vocab)) if i != j)


@slow
def test_run_page(two_runs, tmp_path):
    ws, a, _ = two_runs
    page = report.report([a.name], out=tmp_path, workdir=ws)
    assert page == tmp_path / f'{a.name}.html'
    dom = load(page)
    valid = stored_valid([a])
    check_mistakes(dom, valid, a.vocab)
    wrong = (np.array(a.vocab)[valid[a.vocab].to_numpy().argmax(1)] != valid['label']).sum()
    assert int(dom.notes['summary']['data-wrong']) == wrong and int(dom.notes['summary']['data-images']) == len(valid)
    assert dom.tables['head'][1][0] == a.name
    assert any('learning curves' == i.get('alt') for i in dom.imgs) and any('reliability diagram' == i.get('alt') for i in dom.imgs)


@pytest.fixture(scope='module')
def group(tiny_sample, tmp_path_factory):
    """A 2-fold CV group of one-epoch tiny runs and its refit, with a suspects CSV as `comp suspects` writes it."""
    ws = tmp_path_factory.mktemp('report-cv')
    competition.record(competition.load(tiny_sample), ws)
    g = cv.cv(TrainConfig(arch='test_convnext', epochs=1, workers=0), folds=2, refit=True, workdir=ws, quiet=True)
    oof = stored_valid(g.members).head(5)
    pd.DataFrame({'image_id': oof['image_id'], 'given': oof['label'], 'suggested': g.vocab[0],
                  'score': np.linspace(0.1, 0.5, len(oof))}).to_csv(g.path / 'suspects.csv', index=False)
    return ws, g


@slow
def test_group_page_shows_out_of_fold_mistakes_fold_errors_and_suspects(group, tmp_path):
    ws, g = group
    dom = load(report.report(g.name, out=tmp_path, workdir=ws))   # one name as a string too
    check_mistakes(dom, stored_valid(g.members), g.vocab)
    folds = dom.rows('folds')
    assert [f['run'] for f in folds] == [m.name for m in g.members]
    assert [float(f['error']) for f in folds] == pytest.approx([m.result['valid_error'] for m in g.members], abs=1e-4)
    assert dom.tiles('suspects') == list(pd.read_csv(g.path / 'suspects.csv', dtype=str)['image_id'])


@slow
def test_a_run_without_validation_says_so(group, tmp_path):
    ws, g = group
    page = report.report([g.refit.name], out=tmp_path, workdir=ws)
    dom = load(page)
    assert 'No validation set' in page.read_text()
    assert 'top-losses' not in dom.grids and 'confusion' not in dom.tables
    assert any(i.get('alt') == 'learning curves' for i in dom.imgs)


@slow
def test_submission_page(two_runs, tmp_path):
    ws, a, b = two_runs
    rec = ensemble.ensemble([a, b], blend='3,1', name='report-ens', workdir=ws)
    dom = load(report.report(['report-ens'], out=tmp_path, workdir=ws))
    vocab = a.vocab
    va, vb = (stored_valid([r]).set_index('image_id').sort_index() for r in (a, b))
    mix = 0.75 * va[vocab] + 0.25 * vb[vocab]
    wrong = mix.idxmax(axis=1) != va['label']
    p = mix.to_numpy() / mix.to_numpy().sum(1, keepdims=True)
    loss = pd.Series(-np.log(p[np.arange(len(p)), [vocab.index(t) for t in va['label']]]), index=va.index)
    assert dom.tiles('still-wrong') == list(loss[wrong].sort_values(ascending=False).index[:4 * report.TOP])
    members = dom.rows('members')
    assert [m['member'] for m in members] == [a.name, b.name, 'ensemble']
    assert float(members[-1]['accuracy']) == pytest.approx(1 - rec['valid_error'], abs=1e-4)
    rate = (va[vocab].idxmax(axis=1) != vb[vocab].idxmax(axis=1)).mean()
    assert float(dom.notes['disagree']['data-rate']) == pytest.approx(rate)
    sub = pd.read_csv(rec['submission'], dtype=str)['label'].value_counts()
    assert {r['class']: int(r['test images']) for r in dom.rows('test-classes')} == {c: int(sub.get(c, 0)) for c in vocab}


@slow
def test_index_page_links_every_run_to_its_page(two_runs, tmp_path):
    ws, a, b = two_runs
    index = report.report(out=tmp_path, workdir=ws)
    dom = load(index)
    names = [r['run'] for r in dom.rows('runs')]
    assert a.name in names and b.name in names
    for n in (a.name, b.name):
        assert f'{n}.html' in dom.links and (tmp_path / f'{n}.html').exists()
    assert any(i.get('alt') == 'error against time' for i in dom.imgs)


def test_other_kinds_say_what_does_not_apply(tmp_path):
    # Frames as a multi-label, ordinal and regression run store them, without training: what applies is shown.
    rng = np.random.default_rng(0)
    kinds = {'multi': ('f1_micro', ['rust', 'scab', 'healthy'], ['rust', 'scab rust', 'healthy', 'scab'] * 5),
             'ordinal': ('qwk', ['value'], ['0', '1', '2', '3', '4'] * 4),
             'regression': ('rmse', ['value'], [str(x) for x in rng.integers(1, 100, 20)])}
    for task, (metric, vocab, labels) in kinds.items():
        comp = Competition(tmp_path, 'x', Layout(task=task, metric=metric, range=[1, 100] if task == 'regression' else
                                                 [0, 4] if task == 'ordinal' else []))
        P = rng.random((len(labels), len(vocab))) * (4 if task == 'ordinal' else 100 if task == 'regression' else 1)
        valid = pd.DataFrame(P, columns=vocab).assign(label=labels)
        valid.insert(0, 'image_id', [f'{i}.jpg' for i in range(len(labels))])
        sections = report.mistakes_sections(valid[['image_id', 'label', *vocab]], vocab, comp, {})
        html = ''.join(b for _, b in sections)
        load(write_text(tmp_path / f'{task}.html', report.page(task, sections)))   # a page the browser opens cleanly
        if task != 'ordinal': assert 'does not apply' in html
        if task == 'multi': assert 'id="per-class"' in html and 'id="confusion"' not in html
        if task == 'ordinal': assert 'id="confusion"' in html
        assert 'id="top-losses"' in html


@slow
def test_unknown_name_is_one_line(two_runs):
    ws, _, _ = two_runs
    with pytest.raises(CompError, match='no run, CV group or submission'): report.report(['nope'], workdir=ws)
    one_line(comp_cli('report', 'nope', cwd=ws), 'nope', 'comp runs')


@slow
def test_cli_writes_the_page(two_runs, tmp_path):
    ws, a, _ = two_runs
    r = comp_cli('report', a.name, '--out', tmp_path, cwd=ws)
    assert r.returncode == 0, r.stderr
    assert f'open {tmp_path / (a.name + ".html")}' in r.stdout and (tmp_path / 'index.html').exists()


def test_without_chromium_the_test_skips_here_and_fails_in_ci(monkeypatch):
    monkeypatch.setenv('PATH', '')
    monkeypatch.delenv('CI', raising=False)
    with pytest.raises(pytest.skip.Exception, match='apt-get install chromium'): chromium()
    monkeypatch.setenv('CI', 'true')
    with pytest.raises(pytest.fail.Exception, match='.ci/run installs it'): chromium()
