"""A local HTTP server that speaks the part of Kaggle's API that comp uses, for the real `kaggle` client.

With KAGGLE_API_ENVIRONMENT=LOCALHOST the client calls http://localhost/api/v1/<Service>/<Method>;
HTTP_PROXY=http://127.0.0.1:PORT (empty NO_PROXY) hands those requests, with absolute URIs, to this server.
It scores submissions as Kaggle would, by each competition's evaluation metric (its own scikit-learn code, not comp's)."""
import base64
import io
import json
import threading
import time
import zipfile
from datetime import datetime, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import urlsplit

import numpy as np
import pandas as pd


class FakeKaggle:
    def __init__(self, users=None, tokens=None):
        self.users = users or {'alice': 'secret-key-123'}
        self.tokens = tokens or {'KGAT_alice_token_456': 'alice'}  # access tokens (KAGGLE_API_TOKEN) -> user
        self.competitions = {}      # name -> {'zip': bytes, 'solution': DataFrame, 'metric': Kaggle's text or None}
        self.uploads = {}           # token -> bytes
        self.blob_names = {}        # token -> the uploaded file's name
        self.submissions = []       # dicts
        self.kernels, self.datasets = [], {}
        self.kernel_runs = {}       # (USER/SLUG, version) -> {'status': 'COMPLETE'|'ERROR'|..., 'output': submission bytes}
        self.failures = []          # [{'method': name, 'status': code, 'times': n}]
        self.calls = []             # (method, auth user) in order
        self.pending_polls = 1      # ListSubmissions answers PENDING this many times first
        self.lock = threading.Lock()

    def add_competition(self, name, folder, metric='Categorization Accuracy', code=False):
        """Serve `folder` (a competition in Kaggle's layout) as NAME.zip; score by `metric` (Kaggle's evaluationMetric
        text; None: the API names none, scored as accuracy) against its solution.csv, in the submission's format."""
        folder = Path(folder)
        scorer(metric)  # an unknown text fails here, not at the first submission
        buf = io.BytesIO()
        with zipfile.ZipFile(buf, 'w') as z:
            for f in sorted(folder.rglob('*')):
                if f.is_file() and f.name != 'solution.csv': z.write(f, f.relative_to(folder).as_posix())
        self.competitions[name] = {'zip': buf.getvalue(), 'metric': metric, 'code': code,
                                   'solution': pd.read_csv(folder / 'solution.csv', dtype=str, keep_default_na=False)}

    def fail(self, method, status, times=1):
        self.failures.append({'method': method, 'status': status, 'times': times})

    def count(self, method): return sum(m == method for m, _ in self.calls)

    def start(self):
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *a): pass

            def _send(self, code, body=b'', ctype='application/json', headers=None):
                if isinstance(body, (dict, list)): body = json.dumps(body).encode()
                self.send_response(code)
                self.send_header('Content-Type', ctype)
                self.send_header('Content-Length', str(len(body)))
                for k, v in (headers or {}).items(): self.send_header(k, v)
                self.end_headers()
                self.wfile.write(body)

            def _body(self):
                if 'chunked' in self.headers.get('Transfer-Encoding', ''):
                    # The client streams uploads from a file object: chunked transfer encoding.
                    out = b''
                    while True:
                        size = int(self.rfile.readline().split(b';')[0].strip() or b'0', 16)
                        if size == 0:
                            self.rfile.readline()
                            return out
                        out += self.rfile.read(size)
                        self.rfile.readline()
                n = int(self.headers.get('Content-Length') or 0)
                return self.rfile.read(n) if n else b''

            def _user(self):
                auth = self.headers.get('Authorization', '')
                if auth.startswith('Basic '):
                    user, _, key = base64.b64decode(auth[6:]).decode().partition(':')
                    if fake.users.get(user) == key: return user
                if auth.startswith('Bearer '): return fake.tokens.get(auth[7:])
                return None

            def do_PUT(self):
                path = urlsplit(self.path).path
                data = self._body()
                token = path.rsplit('/', 1)[-1]
                if self.headers.get('Content-Range', '').startswith('bytes */'):
                    # A resumable-upload status query: complete if we hold the bytes, else start over.
                    return self._send(200 if fake.uploads.get(token) else 308, {})
                if fake._failing('Upload'): return self._send(500, {'code': 500, 'message': 'upload broke'})
                fake.uploads[token] = data
                self._send(200, {})

            def do_GET(self):
                # Like Kaggle's storage: the download call redirects here, to a URL that ends in .zip.
                name = urlsplit(self.path).path.rsplit('/', 1)[-1].removesuffix('.zip')
                c = fake.competitions.get(name)
                if c is None: return self._send(404, {'code': 404, 'message': 'not found'})
                last = datetime.now(timezone.utc).strftime('%a, %d %b %Y %H:%M:%S GMT')
                self._send(200, c['zip'], 'application/zip', {'Last-Modified': last})

            def do_POST(self):
                path = urlsplit(self.path).path
                req = json.loads(self._body() or b'{}')
                method = path.rsplit('/', 1)[-1]
                user = self._user()
                fake.calls.append((method, user))
                f = fake._failing(method)
                if f: return self._send(f, {'code': f, 'message': f'injected {f}'})
                if method == 'IntrospectToken':  # as OAuth's introspection (RFC 7662): unknown tokens are inactive
                    owner = fake.tokens.get(req.get('token'))
                    return self._send(200, {'active': owner is not None, 'username': owner or ''})
                if user is None: return self._send(401, {'code': 401, 'message': 'Unauthenticated'})
                handler = getattr(fake, f'h_{method}', None)
                if handler is None: return self._send(404, {'code': 404, 'message': f'no method {method}'})
                code, body, ctype, headers = handler(req, user)
                self._send(code, body, ctype, headers)

        self.server = ThreadingHTTPServer(('127.0.0.1', 0), Handler)
        self.port = self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        return self

    def stop(self):
        self.server.shutdown()
        self.server.server_close()

    def _failing(self, method):
        with self.lock:
            for f in self.failures:
                if f['method'] == method and f['times'] > 0:
                    f['times'] -= 1
                    return f['status']
        return None

    @staticmethod
    def _ok(body): return 200, body, 'application/json', None

    def _notfound(self, what): return 404, {'code': 404, 'message': f'{what} not found'}, 'application/json', None

    # --- competitions ---------------------------------------------------------------------------
    def h_ListCompetitions(self, req, user):
        # Kaggle's search matches titles and slugs; refs are the competitions' URLs.
        search = (req.get('search') or '').lower()
        out = [{'id': i + 1, 'ref': f'https://www.kaggle.com/competitions/{name}', 'title': name.replace('-', ' ').title(),
                'url': f'https://www.kaggle.com/competitions/{name}', 'category': 'Playground',
                **({'evaluationMetric': c['metric']} if c['metric'] is not None else {})}
               for i, (name, c) in enumerate(self.competitions.items()) if search in name.lower()]
        return self._ok({'competitions': out, 'nextPageToken': ''})

    def h_DownloadDataFiles(self, req, user):
        name = req.get('competitionName')
        if name not in self.competitions: return self._notfound('competition')
        return 302, b'', 'text/plain', {'Location': f'http://localhost/files/{name}.zip'}

    def h_StartSubmissionUpload(self, req, user):
        if req.get('competitionName') not in self.competitions: return self._notfound('competition')
        token = f'tok{len(self.uploads) + len(self.submissions) + 1}-{time.time_ns()}'
        return self._ok({'token': token, 'createUrl': f'http://localhost/upload/{token}'})

    def h_CreateSubmission(self, req, user):
        name = req.get('competitionName')
        if name not in self.competitions: return self._notfound('competition')
        data = self.uploads.get(req.get('blobFileTokens'))
        if data is None: return 400, {'code': 400, 'message': 'no such upload'}, 'application/json', None
        ref = 1000 + len(self.submissions)
        self.submissions.append({'ref': ref, 'competition': name, 'user': user, 'data': data, 'polls': 0,
                                 'description': req.get('submissionDescription', ''),
                                 'date': datetime.now(timezone.utc).replace(tzinfo=None)})
        return self._ok({'message': 'Successfully submitted', 'ref': ref})

    def score(self, sub):
        """The submission's score by its competition's metric; a ValueError (Kaggle's error status) when unscorable."""
        c = self.competitions[sub['competition']]
        return score(c['metric'], c['solution'], pd.read_csv(io.BytesIO(sub['data']), dtype=str, keep_default_na=False))

    def h_ListSubmissions(self, req, user):
        out = []
        for s in reversed(self.submissions):
            if s['competition'] != req.get('competitionName') or s['user'] != user: continue
            s['polls'] += 1
            done = s['polls'] > self.pending_polls
            result = {}
            if done:
                try: result = {'status': 'COMPLETE', 'publicScore': f'{self.score(s):.5f}'}
                except (ValueError, KeyError) as e: result = {'status': 'ERROR', 'errorDescription': str(e)}
            out.append({'ref': s['ref'], 'date': s['date'].isoformat(timespec='milliseconds') + 'Z',
                        'description': s['description'], 'fileName': 'submission.csv',
                        'status': 'PENDING', 'totalBytes': len(s['data']), **result, 'submittedBy': user})
        return self._ok({'submissions': out})

    # --- datasets and kernels -------------------------------------------------------------------
    def h_StartBlobUpload(self, req, user):
        token = f'blob{len(self.uploads) + 1}-{time.time_ns()}'
        self.blob_names[token] = req.get('name')
        return self._ok({'token': token, 'createUrl': f'http://localhost/upload/{token}'})

    def h_CreateDataset(self, req, user):
        slug = f'{req.get("ownerSlug") or user}/{req.get("slug")}'
        files = [f.get('token') for f in req.get('files', [])]
        self.datasets[slug] = [{'files': {t: self.uploads.get(t) for t in files}, 'request': req}]
        return self._ok({'ref': slug, 'url': f'http://localhost/datasets/{slug}', 'status': 'Ok'})

    def h_CreateDatasetVersion(self, req, user):
        slug = f'{req.get("ownerSlug")}/{req.get("datasetSlug")}'
        if slug not in self.datasets: return self._notfound('dataset')
        body = req.get('body', {})
        files = [f.get('token') for f in body.get('files', [])]
        self.datasets[slug].append({'files': {t: self.uploads.get(t) for t in files}, 'request': req})
        return self._ok({'ref': slug, 'url': f'http://localhost/datasets/{slug}', 'status': 'Ok'})

    def dataset_files(self, slug):
        """{file name: bytes} of the dataset's latest version, as uploaded (directories as .zip or .tar)."""
        return {self.blob_names[t]: data for t, data in self.datasets[slug][-1]['files'].items()}

    def h_SaveKernel(self, req, user):
        self.kernels.append(req)
        slug = req.get('slug')   # USER/SLUG
        version = sum(k.get('slug') == slug for k in self.kernels)
        self.kernel_runs[(slug, version)] = {'status': 'RUNNING', 'output': None}   # until a test runs it
        return self._ok({'ref': slug, 'url': f'http://localhost/code/{slug}', 'versionNumber': version})

    def _kernel_run(self, owner, slug, version):
        """(version, its run) of kernel OWNER/SLUG: `version` (an int, 'vN' or None for the latest), or (None, None)."""
        ref = f'{owner}/{slug}'
        versions = sorted(v for k, v in self.kernel_runs if k == ref)
        if not versions: return None, None
        v = versions[-1] if version in (None, '') else int(str(version).lstrip('v'))
        return v, self.kernel_runs.get((ref, v))

    def h_GetKernelSessionStatus(self, req, user):
        v, run = self._kernel_run(req.get('userName'), req.get('kernelSlug'), req.get('versionLabel'))
        if run is None: return self._notfound('kernel')
        return self._ok({'status': run['status'], **({'failureMessage': run['error']} if run.get('error') else {})})

    def h_CreateCodeSubmission(self, req, user):
        name = req.get('competitionName')
        c = self.competitions.get(name)
        if c is None: return self._notfound('competition')
        if not c['code']:
            return 400, {'code': 400, 'message': f'{name} takes CSV submissions, not notebooks'}, 'application/json', None
        v, run = self._kernel_run(req.get('kernelOwner'), req.get('kernelSlug'), req.get('kernelVersion'))
        if run is None: return self._notfound('kernel')
        if run['status'] != 'COMPLETE':
            return 400, {'code': 400, 'message': f'kernel version {v} is not complete'}, 'application/json', None
        ref = 1000 + len(self.submissions)
        # Kaggle re-runs the notebook on the hidden test set: here the output a test made in the kernel's world
        self.submissions.append({'ref': ref, 'competition': name, 'user': user, 'data': run['output'], 'polls': 0,
                                 'description': req.get('submissionDescription', ''), 'kernel': (req.get('kernelSlug'), v),
                                 'date': datetime.now(timezone.utc).replace(tzinfo=None)})
        return self._ok({'message': 'Successfully submitted', 'ref': ref})


# --- scoring, as Kaggle's grader does it (scikit-learn on the truth and the submission, matched by id) ---------------
def _floats(df): return df.astype(float).to_numpy()


def _accuracy(truth, pred):
    return float((truth.iloc[:, 0] == pred.iloc[:, 0]).mean())   # a missing row (NaN) counts as wrong


def _log_loss(truth, pred):
    from sklearn.metrics import log_loss
    t, p = _floats(truth), _floats(pred)
    if t.shape[1] == 1: return float(log_loss(t[:, 0], p[:, 0], labels=[0, 1]))   # binary: P(positive)
    return float(log_loss(t.argmax(1), p, labels=list(range(t.shape[1]))))        # one-hot truth


def _auc(truth, pred):
    from sklearn.metrics import roc_auc_score
    return float(roc_auc_score(_floats(truth)[:, 0], _floats(pred)[:, 0]))


def _mean_auc(truth, pred):
    from sklearn.metrics import roc_auc_score
    t, p = _floats(truth), _floats(pred)
    return float(np.mean([roc_auc_score(t[:, j], p[:, j]) for j in range(t.shape[1])]))


def _f1_micro(truth, pred):
    # The classes are those of the answers: predicted labels outside them are ignored (MLE-bench's grader).
    from sklearn.metrics import f1_score
    from sklearn.preprocessing import MultiLabelBinarizer
    sets = lambda col: [set(str(v).split()) for v in col]
    t = sets(truth.iloc[:, 0])
    mlb = MultiLabelBinarizer(classes=sorted(set().union(*t))).fit(t)
    p = [s & set(mlb.classes_) for s in sets(pred.iloc[:, 0])]
    return float(f1_score(mlb.transform(t), mlb.transform(p), average='micro'))


def _qwk(truth, pred):
    from sklearn.metrics import cohen_kappa_score
    return float(cohen_kappa_score(truth.iloc[:, 0].astype(int), pred.iloc[:, 0].astype(int), weights='quadratic'))


def _rmse(truth, pred):
    t, p = _floats(truth)[:, 0], _floats(pred)[:, 0]
    return float(np.sqrt(np.mean((t - p) ** 2)))


# Kaggle's evaluationMetric texts, by the words in them (checked in this order: "Mean Columnwise Area Under ..." is
# not plain AUC).
SCORERS = [(('kappa',), _qwk), (('log loss', 'logloss', 'log-loss'), _log_loss),
           (('columnwise', 'column-wise', 'column wise'), _mean_auc), (('area under', 'auc'), _auc),
           (('f1', 'f-score', 'fscore'), _f1_micro), (('root mean squared', 'rmse'), _rmse), (('accuracy',), _accuracy)]


def scorer(metric):
    """The scoring function for Kaggle's metric text (None: accuracy)."""
    text = (metric or 'accuracy').lower()
    for words, fn in SCORERS:
        if any(w in text for w in words): return fn
    raise ValueError(f'the fake Kaggle cannot score {metric!r}')


def score(metric, solution, sub):
    """Score the submission frame `sub` against `solution` (both in the submission's format, id first; strings)."""
    idc, cols = solution.columns[0], list(solution.columns[1:])
    lacking = [c for c in [idc, *cols] if c not in sub.columns]
    if lacking: raise ValueError(f'Submission is missing column(s) {", ".join(lacking)}')
    if sub[idc].duplicated().any(): raise ValueError(f'Submission has duplicate {idc} values')
    m = solution.merge(sub[[idc, *cols]], on=idc, how='left', suffixes=('', '_pred'))
    pred = m[[f'{c}_pred' for c in cols]].set_axis(cols, axis=1)
    fn = scorer(metric)
    if fn is not _accuracy and pred.isna().any().any():
        raise ValueError(f'Submission is missing {int(pred.isna().any(axis=1).sum())} row(s) of the solution')
    return fn(m[cols], pred)


def client_env(fake, home):
    """Environment for the real kaggle client to talk to `fake`, with alice's credentials."""
    return {'KAGGLE_API_ENVIRONMENT': 'LOCALHOST', 'HTTP_PROXY': f'http://127.0.0.1:{fake.port}',
            'http_proxy': f'http://127.0.0.1:{fake.port}', 'NO_PROXY': '', 'no_proxy': '',
            'KAGGLE_USERNAME': 'alice', 'KAGGLE_KEY': fake.users['alice'], 'HOME': str(home),
            'KAGGLE_CONFIG_DIR': str(Path(home) / '.kaggle'), 'COMP_KAGGLE_BACKOFF': '0.05'}
