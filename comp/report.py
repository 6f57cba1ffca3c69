"""`comp report`: what a run, a CV group or a submission gets wrong, as a static web page (one HTML file per page,
its figures and images inlined, so it opens from disk with no server and no network).

The numbers come from what runs store (per-epoch metrics, validation probabilities, config, env), never from
predicting again, except a submission whose members' TTA probabilities were not stored. Pages go to `reports/` in
the workspace: index.html (the runs table), <run or group>.html, submission-<name>.html."""
import base64
import html
import json
import os
from pathlib import Path

import numpy as np

from . import competition, metrics, plots, runs, submission
from .competition import LABEL
from .config import BETA
from .errors import CompError
from .files import write_text

REPORTS_DIR = 'reports'
TOP = 16   # images in a grid


def report(names=(), out=None, workdir='.', echo=None):
    """Write the page of each run, CV group or submission in `names` (with none: a page for every complete run and
    group) and the runs table page (index.html) linking to them; return the page of the one name given, else the
    index."""
    out = Path(out) if out is not None else Path(workdir) / REPORTS_DIR
    names = [names] if isinstance(names, (str, os.PathLike)) else list(names)
    targets = [_target(n, workdir) for n in names]   # every name checked before any page is written
    out.mkdir(parents=True, exist_ok=True)
    pages = [_page(t, out, workdir) for t in targets]
    if not names:
        for r in runs.table(workdir):
            if r['status'] != 'complete': continue
            try: pages.append(_page(runs.find(r['run'], workdir), out, workdir))
            except CompError as e:   # one run's missing file does not stop the others' pages
                if echo: echo(f'no page for {r["run"]}: {e}')
    index = index_page(out, workdir)
    for p in pages + [index]:
        if echo: echo(f'wrote {p}')
    return pages[0] if len(names) == 1 else index


def _page(target, out, workdir):
    return submission_page(target, out, workdir) if isinstance(target, Path) else run_page(target, out, workdir)


def _target(name, workdir):
    """A Run (run or CV group) by name or folder, else the CSV path of a submission by name or path."""
    try: return runs.find(name, workdir)
    except CompError: pass
    folder = Path(workdir) / submission.SUBMISSIONS_DIR
    for p in (Path(name), folder / name, folder / f'{name}.csv', Path(name).with_suffix('.csv')):
        csv = p.with_suffix('.csv')
        if csv.is_file() and submission.sidecar_path(csv).is_file(): return csv
    raise CompError(f'no run, CV group or submission {str(name)!r}: pass a name from `comp runs`, or a submission in submissions/')


def page_name(target):
    """The file name of a run's, group's or submission's page in the reports folder."""
    return f'submission-{Path(target).stem}.html' if isinstance(target, Path) else f'{target.name}.html'


# ---- what a validation frame (id, label, one column per output) says about the model ----

def per_image(valid, vocab, comp, params=None):
    """One row per image: actual, predicted (decoded as the submission would be), the probability of the prediction
    (single-label: its class; multi-label: the top class; none for a number), the image's loss, and whether it is
    right (None for a regressed number)."""
    import pandas as pd
    P = valid[vocab].to_numpy(float)
    if params is None: params = comp.fit_decode(valid, vocab)
    pred = comp.decode(P, vocab, params)
    truth = valid[LABEL].astype(str).to_numpy()
    task = comp.task
    if task == 'single':
        P = P / P.sum(1, keepdims=True)
        idx = {c: i for i, c in enumerate(vocab)}
        p_true = np.array([P[r, idx[t]] if t in idx else 0.0 for r, t in enumerate(truth)])
        loss, prob = -np.log(np.clip(p_true, 1e-15, 1)), P.max(1)
        right = [p == t for p, t in zip(pred, truth)]
    elif task == 'multi':
        Y = metrics._onehot(truth, vocab)
        Pc = np.clip(P, 1e-15, 1 - 1e-15)
        loss, prob = -(Y * np.log(Pc) + (1 - Y) * np.log(1 - Pc)).mean(1), P.max(1)
        right = [set(p.split()) == set(t.split()) for p, t in zip(pred, truth)]
    else:
        v = np.array([float(t) for t in truth])
        loss, prob = (P[:, 0] - v) ** 2, np.full(len(v), np.nan)
        right = [int(p) == int(float(t)) for p, t in zip(pred, truth)] if task == 'ordinal' else [None] * len(v)
    id_col = valid.columns[0]
    return pd.DataFrame({id_col: valid[id_col].astype(str).to_numpy(), 'actual': truth, 'predicted': [str(p) for p in pred],
                         'probability': prob, 'loss': loss, 'right': right})


def class_labels(comp, vocab, rows):
    """The classes a confusion matrix and the per-class table are over: the vocab, or the grades seen (ordinal);
    None where there are none (a regressed number)."""
    if comp.task in ('single', 'multi'): return list(vocab)
    if comp.task == 'ordinal': return [str(g) for g in sorted({int(float(x)) for x in [*rows['actual'], *rows['predicted']]})]
    return None


def confusion(rows, labels):
    """The confusion matrix (rows actual, columns predicted) of single-label or ordinal predictions."""
    from sklearn.metrics import confusion_matrix
    return confusion_matrix(list(rows['actual']), list(rows['predicted']), labels=labels)


def most_confused(cm, labels, n=10):
    """The off-diagonal cells with the most images: (actual, predicted, count), most first."""
    cells = [(labels[i], labels[j], int(cm[i, j])) for i in range(len(labels)) for j in range(len(labels)) if i != j and cm[i, j]]
    return sorted(cells, key=lambda c: -c[2])[:n]


def per_class(rows, labels, multi=False):
    """Precision, recall, F1 and support per class (scikit-learn)."""
    from sklearn.metrics import precision_recall_fscore_support
    from sklearn.preprocessing import MultiLabelBinarizer
    if multi:
        mlb = MultiLabelBinarizer(classes=labels)
        t, p = mlb.fit_transform([a.split() for a in rows['actual']]), mlb.transform([a.split() for a in rows['predicted']])
    else:
        t, p = list(rows['actual']), list(rows['predicted'])
    pr, rc, f1, sup = precision_recall_fscore_support(t, p, labels=None if multi else labels, zero_division=0)
    return [{'class': c, 'precision': float(a), 'recall': float(b), 'f1': float(f), 'support': int(s)}
            for c, a, b, f, s in zip(labels, pr, rc, f1, sup)]


def calibration(conf, outcome, n=10):
    """Reliability bins (lo, hi, mean confidence, fraction right, count) and the expected calibration error."""
    conf, outcome = np.asarray(conf, float), np.asarray(outcome, float)
    edges = np.linspace(0, 1, n + 1)
    k = np.clip(np.digitize(conf, edges[1:-1]), 0, n - 1)
    bins = [(edges[b], edges[b + 1], float(conf[k == b].mean()) if (k == b).any() else 0.0,
             float(outcome[k == b].mean()) if (k == b).any() else 0.0, int((k == b).sum())) for b in range(n)]
    ece = sum(c * abs(m - f) for _, _, m, f, c in bins) / max(1, len(conf))
    return bins, float(ece)


def lr_schedule(cfg, lr, n=50):
    """(epochs, lrs): the head's learning rate through training as fastai's one-cycle schedules set it, from the
    run's config and lr (comp records losses and metrics per epoch, not the rate)."""
    def one_cycle(lr_max, pct, div=25.0, div_final=1e5):
        pos = np.linspace(0, 1, n)
        cos = lambda a, b, p: a + (1 + np.cos(np.pi * (1 - p))) * (b - a) / 2
        up = cos(lr_max / div, lr_max, np.clip(pos / pct, 0, 1))
        down = cos(lr_max, lr_max / div_final, np.clip((pos - pct) / (1 - pct), 0, 1))
        return pos, np.where(pos < pct, up, down)
    epochs = cfg['epochs']
    if cfg.get('schedule') == 'one_cycle':
        x, y = one_cycle(lr, 0.25)
        return x * epochs, y
    x0, y0 = one_cycle(lr, 0.99)   # fine_tune: one frozen epoch at lr, then lr / 2 unfrozen
    x1, y1 = one_cycle(lr / 2, 0.3, div=5.0)
    return np.concatenate([x0, 1 + x1 * epochs]), np.concatenate([y0, y1])


# ---- HTML ----

STYLE = """body{font:14px/1.4 system-ui,sans-serif;margin:1.5em auto;max-width:1200px;padding:0 1em;color:#222}
h1{font-size:1.5em}h2{font-size:1.2em;margin-top:1.6em;border-bottom:1px solid #ddd}
table{border-collapse:collapse;margin:.5em 0}td,th{border:1px solid #ddd;padding:2px 8px;text-align:right}
td:first-child,th:first-child{text-align:left}th{background:#f4f4f4}table.sortable th{cursor:pointer}
.grid{display:flex;flex-wrap:wrap;gap:8px}.tile{margin:0;width:150px;font-size:12px;border:1px solid #ddd;padding:4px}
.tile img{width:140px;height:140px;object-fit:contain;background:#eee}.wrong{color:#b00}.note{color:#666}
.wide{overflow-x:auto}pre{background:#f7f7f7;padding:.5em;overflow:auto;font-size:12px}"""

# Errors the page meets (a script's, an image that does not load) are written into the page, where anyone (and the
# tests' headless browser) can read them; the table sort is the only other script.
SCRIPT = """<script>
window.addEventListener('error',function(e){var b=document.body;if(b)b.dataset.errors=(b.dataset.errors||'')+
(e.message||('could not load '+((e.target&&e.target.src)||'').slice(0,60)))+'\\n';},true);
function sortBy(th){var t=th.closest('table'),b=t.tBodies[0],i=Array.from(th.parentNode.children).indexOf(th),
d=th.dataset.dir=th.dataset.dir==='a'?'d':'a',key=function(r){var c=r.children[i],v=c.dataset.v!==undefined?c.dataset.v:c.textContent;
var n=parseFloat(v);return isNaN(n)?v:n;};Array.from(b.rows).sort(function(x,y){var p=key(x),q=key(y);
var s=typeof p===typeof q?(p<q?-1:p>q?1:0):(typeof p==='number'?-1:1);return d==='a'?s:-s;}).forEach(function(r){b.appendChild(r);});}
</script>"""


def esc(x):
    """Text made safe to put in HTML."""
    return html.escape(str(x))


def _cell(v):
    if v is None or (isinstance(v, float) and v != v): return '<td data-v="">-</td>'
    if isinstance(v, float): return f'<td data-v="{v!r}">{v:.4f}</td>'
    return f'<td>{v if isinstance(v, Raw) else esc(v)}</td>'


class Raw(str):
    """HTML written by this module, put into a page as it is."""


def table(rows, id=None, cols=None, sortable=False):
    """An HTML table of dicts (header from the keys)."""
    if not rows: return '<p class="note">(none)</p>'
    cols = cols or list(rows[0])
    click = ' onclick="sortBy(this)"' if sortable else ''
    head = ''.join(f'<th{click}>{esc(c)}</th>' for c in cols)
    body = ''.join('<tr>' + ''.join(_cell(r.get(c)) for c in cols) + '</tr>' for r in rows)
    attrs = (f' id="{id}"' if id else '') + (' class="sortable"' if sortable else '')
    return f'<table{attrs}><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>'


def matrix(cm, labels, id):
    """The confusion matrix as a table: the counts readable as text beside its figure."""
    head = '<th>actual \\ predicted</th>' + ''.join(f'<th>{esc(c)}</th>' for c in labels)
    body = ''.join(f'<tr><th>{esc(a)}</th>' + ''.join(f'<td>{int(v)}</td>' for v in row) + '</tr>' for a, row in zip(labels, cm))
    return (f'<details><summary>the counts as a table</summary><div class="wide"><table id="{id}"><thead><tr>{head}</tr>'
            f'</thead><tbody>{body}</tbody></table></div></details>')


def figure(png, alt):
    """A PNG inlined as an image."""
    return f'<img alt="{esc(alt)}" src="data:image/png;base64,{base64.b64encode(png).decode()}">'


def thumb(path, size=140):
    """A small JPEG of an image as a data URI, or None when it cannot be read."""
    from PIL import Image
    import io
    try:
        with Image.open(path) as im:
            im = im.convert('RGB')
            im.thumbnail((size, size))
            buf = io.BytesIO()
            im.save(buf, format='JPEG', quality=80)
    except (OSError, ValueError): return None
    return 'data:image/jpeg;base64,' + base64.b64encode(buf.getvalue()).decode()


def grid(tiles, id):
    """An image grid; `tiles`: (data URI or None, id, [(caption, value)], wrong) each."""
    out = []
    for src, i, lines, wrong in tiles:
        img = f'<img alt="{esc(i)}" src="{src}">' if src else '<p class="note">(image not found)</p>'
        cap = ''.join(f'<div>{esc(k)}: <b>{esc(v)}</b></div>' for k, v in lines)
        out.append(f'<figure class="tile{" wrong" if wrong else ""}" data-id="{esc(i)}">{img}'
                   f'<figcaption><div>{esc(i)}</div>{cap}</figcaption></figure>')
    return f'<div class="grid" id="{id}">{"".join(out)}</div>' if out else f'<p class="note" id="{id}">(none)</p>'


def page(title, sections, index=True):
    """A whole page: `sections` is a list of (heading, HTML) pairs."""
    up = '<p><a href="index.html">all runs</a></p>' if index else ''
    body = ''.join(f'<section><h2>{esc(h)}</h2>{b}</section>' for h, b in sections)
    return (f'<!DOCTYPE html><html><head><meta charset="utf-8"><title>{esc(title)}</title><style>{STYLE}</style>'
            f'{SCRIPT}</head><body data-errors=""><h1>{esc(title)}</h1>{up}{body}</body></html>')


def na(what, comp):
    """The note that says a section does not apply to this kind of competition."""
    return f'<p class="note">{esc(what)} does not apply to a {comp.task} competition.</p>'


# ---- pages ----

def _paths(comp):
    """Image id -> file of the competition's training images."""
    df = comp.train_df()
    return dict(zip(df[comp.layout.id_col].astype(str), df['path']))


def image_grid(rows, comp, paths, id, extra=()):
    """A grid of the images in `rows` (per_image rows) with actual, predicted, probability and loss."""
    id_col = rows.columns[0]
    tiles = []
    for _, r in rows.iterrows():
        lines = [('actual', r['actual']), ('predicted', r['predicted'])]
        if r['probability'] == r['probability']: lines.append(('probability', f'{r["probability"]:.3f}'))
        lines += [('loss', f'{r["loss"]:.3f}'), *[(k, r[k]) for k in extra]]
        p = paths.get(r[id_col])
        tiles.append((thumb(comp.path / p) if p else None, r[id_col], lines, r['right'] is False))
    return grid(tiles, id)


def mistakes_sections(valid, vocab, comp, paths, params=None):
    """Confusion matrix, most-confused pairs, per-class table, top losses and reliability of a validation frame."""
    rows = per_image(valid, vocab, comp, params)
    labels = class_labels(comp, vocab, rows)
    n_wrong = sum(r is False for r in rows['right'])
    title = metrics.METRICS[comp.metric].title
    score = comp.score(valid, vocab, params if params is not None else comp.fit_decode(valid, vocab))
    out = [('Validation', f'<p id="summary" data-images="{len(rows)}" data-wrong="{n_wrong}">{len(rows)} images, '
                          f'{n_wrong} wrong; {esc(title)} {score:.4f}</p>')]
    top = rows.sort_values('loss', ascending=False).head(TOP)
    out.append((f'Top {len(top)} losses', image_grid(top, comp, paths, 'top-losses')))
    if comp.task in ('single', 'ordinal'):
        cm = confusion(rows, labels)
        out.append(('Confusion matrix', figure(plots.png(plots.confusion(cm, labels)), 'confusion matrix') + matrix(cm, labels, 'confusion')))
        pairs = [{'actual': a, 'predicted': p, 'images': c} for a, p, c in most_confused(cm, labels)]
        out.append(('Most confused', table(pairs, 'most-confused')))
    else: out.append(('Confusion matrix', na('A confusion matrix (one class per image)', comp)))
    out.append(('Per class', table(per_class(rows, labels, comp.task == 'multi'), 'per-class', sortable=True) if labels
                else na('Precision and recall per class', comp)))
    if comp.task == 'single':
        bins, ece = calibration(rows['probability'], [r is True for r in rows['right']])
    elif comp.task == 'multi':
        P = valid[vocab].to_numpy(float)
        bins, ece = calibration(P.ravel(), metrics._onehot(list(valid[LABEL].astype(str)), vocab).ravel())
    else: bins = None
    out.append(('Reliability', figure(plots.png(plots.reliability(bins)), 'reliability diagram') +
                f'<p>expected calibration error {ece:.4f}</p>' if bins else na('A reliability diagram (probabilities)', comp)))
    return out


def _curve(run, comp, label=''):
    m = run.metrics()
    if not len(m): return None
    err = [c for c in m.columns if c not in ('epoch', 'train_loss', 'valid_loss', 'seconds', 'lr')]
    score = np.array([metrics.to_error(comp.metric, e) for e in m[err[0]].astype(float)]) if err else None   # its own inverse
    lr = run.result.get('lr') or run.config.get('lr')
    get = lambda c: m[c].to_numpy(float) if c in m else None
    if 'lr' in m: lrs = m['epoch'].to_numpy(), m['lr'].to_numpy(float)   # recorded per epoch, where a run has it
    else: lrs = lr_schedule(run.config, float(lr)) if isinstance(lr, (int, float)) else None
    return label, m['epoch'].to_numpy(), get('train_loss'), get('valid_loss'), score, lrs


def _settings(rec):
    rows = [{'setting': k, 'value': json.dumps(v, default=str) if isinstance(v, (dict, list)) else v} for k, v in rec.items()]
    return table(rows)


def run_page(run, out, workdir='.'):
    """The page of a run or CV group (out-of-fold predictions, per-fold errors, suspects); its path."""
    from .predict import check_complete
    check_complete(run)
    comp = competition.find(run.config['data'], workdir)
    id_col, vocab = comp.layout.id_col, run.vocab
    group = bool(run.members)
    parts = run.members if group else [run]
    import pandas as pd
    valid = pd.concat([m.read_preds('valid', 0, id_col) for m in parts]).sort_values(id_col).reset_index(drop=True)
    title = metrics.METRICS[comp.metric].title
    res = run.result
    head = [{'run': run.name, 'kind': 'CV group (out-of-fold)' if group else 'run', 'competition': comp.name,
             'metric': title, 'score': res.get('valid_score'), 'error': res.get('valid_error'),
             'minutes': round(res['seconds'] / 60, 1) if 'seconds' in res else None}]
    sections = [('Summary', table(head, 'head'))]
    if group:
        folds = [{'fold': k, 'run': m.name, title: metrics.to_error(comp.metric, m.result['valid_error']),
                  'error': m.result['valid_error']} for k, m in enumerate(parts)]
        sections.append(('Per fold', table(folds, 'folds')))
    curves = [c for c in (_curve(m, comp, f'fold {k}' if group else '') for k, m in enumerate(parts)) if c]
    rebuilt = any('lr' not in m.metrics() for m in parts)   # runs from before comp recorded the rate per epoch
    note = '<p class="note">The learning rate is the schedule fastai follows for the run\'s config and lr.</p>' if rebuilt else ''
    sections.append(('Learning curves', figure(plots.png(plots.learning_curves(curves, title)), 'learning curves') + note
                     if curves else '<p class="note">(no epochs recorded)</p>'))
    paths = _paths(comp)
    if len(valid): sections += mistakes_sections(valid, vocab, comp, paths)
    else: sections.append(('Validation', '<p class="note">No validation set (trained on every image): nothing to show.</p>'))
    if group: sections.append(('Suspect labels', suspects_grid(run, comp, paths)))
    sections.append(('Config', _settings(run.config)))
    sections.append(('Provenance', _settings(run.env)))
    return write_text(out / page_name(run), page(f'{"CV group" if group else "Run"} {run.name}', sections))


SUSPECTS_FILE = 'suspects.csv'   # written into a CV group's folder by `comp suspects`


def suspects_grid(group, comp, paths):
    """The images `comp suspects` found in the group's folder, as a grid; a note when it has not run."""
    import pandas as pd
    f = group.path / SUSPECTS_FILE
    if not f.exists(): return f'<p class="note">None listed: run <code>comp suspects {esc(group.name)}</code> to find them.</p>'
    id_col = comp.layout.id_col
    df = pd.read_csv(f, dtype={id_col: str, 'given': str, 'suggested': str})
    tiles = [(thumb(comp.path / paths[r[id_col]]) if r[id_col] in paths else None, r[id_col],
              [('given', r['given']), ('suggested', r['suggested']), ('score', f'{float(r["score"]):.3f}')], False)
             for _, r in df.head(4 * TOP).iterrows()]
    return f'<p>{len(df)} suspects (showing {len(tiles)}).</p>' + grid(tiles, 'suspects')


def submission_page(csv, out, workdir='.'):
    """The page of a submission: members' errors and the ensemble's, disagreement, its mistakes, test classes."""
    import pandas as pd
    from .blending import combine
    from .predict import predictions
    rec = submission.read_sidecar(csv)
    names = rec.get('runs') or []
    if not names: raise CompError(f'{submission.sidecar_path(csv)} names no runs: it was not written by comp predict or comp ensemble')
    rs = [runs.find(n, workdir) for n in names]
    comp = competition.find(rs[0].config['data'], workdir)
    id_col, vocab, title = comp.layout.id_col, rs[0].vocab, metrics.METRICS[comp.metric].title
    tta, beta = rec.get('tta') or 0, rec.get('beta')
    preds = [predictions(r, tta, BETA if beta is None else beta, workdir, comp) for r in rs]
    valids = [v.set_index(id_col).sort_index() for _, v in preds]
    shared = all(len(v) and v.index.equals(valids[0].index) for v in valids)
    weights = rec.get('weights') or [1 / len(rs)] * len(rs)
    sections, paths = [], _paths(comp)
    members = [{'member': Raw(f'<a href="{esc(page_name(r))}">{esc(r.name)}</a>'), 'weight': float(w)} for r, w in zip(rs, weights)]
    if shared:
        frame = lambda P: pd.DataFrame(P, columns=vocab, index=valids[0].index).assign(label=valids[0][LABEL]).reset_index()
        ens = frame(combine(rec, [v[vocab].to_numpy(float) for v in valids]))
        params = rec.get('decode') or comp.fit_decode(ens, vocab)
        for m, v in zip(members, valids):
            m[title] = comp.score(v.reset_index(), vocab, comp.fit_decode(v.reset_index(), vocab))
        members.append({'member': 'ensemble', 'weight': 1.0, title: comp.score(ens, vocab, params)})
        sections.append(('Members', table(members, 'members')))
        decoded = [comp.decode(v[vocab].to_numpy(float), vocab, comp.fit_decode(v.reset_index(), vocab)) for v in valids]
        sections.append(('Disagreement', disagreement(names, decoded)))
        rows = per_image(ens, vocab, comp, params)
        wrong = rows[[r is not True for r in rows['right']]].sort_values('loss', ascending=False)
        what = 'Largest errors' if comp.task == 'regression' else f'Still wrong ({len(wrong)} images)'
        sections.append((f'{what}: the {min(len(wrong), 4 * TOP)} with the highest loss',
                         image_grid(wrong.head(4 * TOP), comp, paths, 'still-wrong')))
    else:
        sections.append(('Members', table(members, 'members') + '<p class="note">The members do not share a validation '
                         'set (or one has none): no validation errors to compare.</p>'))
    tests = [t.set_index(id_col).sort_index()[vocab].to_numpy(float) for t, _ in preds]
    sections.append(('Test classes against training', test_classes(comp, vocab, combine(rec, tests), rec.get('decode'))))
    sections.append(('Record', _settings(rec)))
    return write_text(out / page_name(csv), page(f'Submission {csv.stem}', sections))


def disagreement(names, decoded):
    """How often the members' predictions differ: over all, and for each pair."""
    n = len(decoded[0])
    if len(decoded) < 2 or not n: return '<p class="note">One member: nothing to disagree with.</p>'
    D = np.array(decoded, dtype=object)
    any_ = float(np.mean([len(set(D[:, i])) > 1 for i in range(n)]))
    pairs = [{'member': a, **{b: float(np.mean(D[i] != D[j])) for j, b in enumerate(names)}} for i, a in enumerate(names)]
    return f'<p id="disagree" data-rate="{any_!r}">Members disagree on {any_:.1%} of the validation images.</p>' + table(pairs, 'pairs')


def test_classes(comp, vocab, P, params):
    """The share of each class in the training labels and in the submission's test predictions."""
    if comp.task == 'regression': return na('A class distribution', comp)
    import pandas as pd
    count = lambda labels: pd.Series([c for x in labels for c in str(x).split()]).value_counts()
    train = count(comp.train_df()[LABEL])
    test = count(comp.decode(P, vocab, params))
    labels = [str(c) for c in sorted(set(train.index) | set(test.index), key=lambda c: (len(str(c)), str(c)))] if comp.task == 'ordinal' \
        else [c for c in vocab]
    tr, te = [float(train.get(c, 0)) / max(1, train.sum()) for c in labels], [float(test.get(c, 0)) / max(1, test.sum()) for c in labels]
    rows = [{'class': c, 'train': a, 'test': b, 'test images': int(test.get(c, 0))} for c, a, b in zip(labels, tr, te)]
    return figure(plots.png(plots.shares(labels, [('train', tr), ('test (predicted)', te)])), 'class shares') + table(rows, 'test-classes')


def index_page(out, workdir='.'):
    """The runs table as a page, each row linking to its run's page where one is in `out`; and validation error
    against training time for every run."""
    rows = runs.table(workdir)
    for r in rows:
        f = f'{r["run"]}.html'
        if (out / f).exists(): r['run'] = Raw(f'<a href="{esc(f)}">{esc(r["run"])}</a>')
    pts = [(str(r['arch']), r['minutes'], r['error']) for r in rows if r['minutes'] is not None and r['error'] is not None]
    fig = figure(plots.png(plots.scatter(pts, 'training minutes', 'validation error (lower is better)')), 'error against time') \
        if pts else '<p class="note">(no finished run with a validation error)</p>'
    subs = sorted(p for p in out.glob('submission-*.html'))
    links = ''.join(f'<li><a href="{esc(p.name)}">{esc(p.stem[len("submission-"):])}</a></li>' for p in subs)
    sections = [('Runs', table(rows, 'runs', cols=list(runs.COLUMNS), sortable=True)), ('Error against training time', fig)]
    if links: sections.append(('Submissions', f'<ul>{links}</ul>'))
    return write_text(out / 'index.html', page(f'Runs in {Path(workdir).resolve().name}', sections, index=False))
