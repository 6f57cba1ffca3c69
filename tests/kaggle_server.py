"""A local HTTP server that speaks the part of Kaggle's API that comp uses, for the real `kaggle` client.

With KAGGLE_API_ENVIRONMENT=LOCALHOST the client calls http://localhost/api/v1/<Service>/<Method>;
HTTP_PROXY=http://127.0.0.1:PORT (empty NO_PROXY) hands those requests, with absolute URIs, to this server."""
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

import pandas as pd


class FakeKaggle:
    def __init__(self, users=None, tokens=None):
        self.users = users or {'alice': 'secret-key-123'}
        self.tokens = tokens or {'KGAT_alice_token_456': 'alice'}  # access tokens (KAGGLE_API_TOKEN) -> user
        self.competitions = {}      # name -> {'zip': bytes, 'solution': DataFrame}
        self.uploads = {}           # token -> bytes
        self.blob_names = {}        # token -> the uploaded file's name
        self.submissions = []       # dicts
        self.kernels, self.datasets = [], {}
        self.failures = []          # [{'method': name, 'status': code, 'times': n}]
        self.calls = []             # (method, auth user) in order
        self.pending_polls = 1      # ListSubmissions answers PENDING this many times first
        self.lock = threading.Lock()

    def add_competition(self, name, folder):
        """Serve `folder` (a competition in Kaggle's layout) as NAME.zip; score against its solution.csv."""
        folder = Path(folder)
        buf = io.BytesIO()
        with zipfile.ZipFile(buf, 'w') as z:
            for f in sorted(folder.rglob('*')):
                if f.is_file() and f.name != 'solution.csv': z.write(f, f.relative_to(folder).as_posix())
        self.competitions[name] = {'zip': buf.getvalue(),
                                   'solution': pd.read_csv(folder / 'solution.csv', dtype=str)}

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
        sol = self.competitions[sub['competition']]['solution']
        df = pd.read_csv(io.BytesIO(sub['data']), dtype=str)
        m = sol.merge(df, on='image_id', how='left', suffixes=('', '_pred'))
        return float((m['label'] == m['label_pred']).mean())

    def h_ListSubmissions(self, req, user):
        out = []
        for s in reversed(self.submissions):
            if s['competition'] != req.get('competitionName') or s['user'] != user: continue
            s['polls'] += 1
            done = s['polls'] > self.pending_polls
            out.append({'ref': s['ref'], 'date': s['date'].isoformat(timespec='milliseconds') + 'Z',
                        'description': s['description'], 'fileName': 'submission.csv',
                        'status': 'COMPLETE' if done else 'PENDING', 'totalBytes': len(s['data']),
                        **({'publicScore': f'{self.score(s):.5f}'} if done else {}), 'submittedBy': user})
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
        slug = req.get('slug')
        return self._ok({'ref': slug, 'url': f'http://localhost/code/{slug}', 'versionNumber': len(self.kernels)})


def client_env(fake, home):
    """Environment for the real kaggle client to talk to `fake`, with alice's credentials."""
    return {'KAGGLE_API_ENVIRONMENT': 'LOCALHOST', 'HTTP_PROXY': f'http://127.0.0.1:{fake.port}',
            'http_proxy': f'http://127.0.0.1:{fake.port}', 'NO_PROXY': '', 'no_proxy': '',
            'KAGGLE_USERNAME': 'alice', 'KAGGLE_KEY': fake.users['alice'], 'HOME': str(home),
            'KAGGLE_CONFIG_DIR': str(Path(home) / '.kaggle'), 'COMP_KAGGLE_BACKOFF': '0.05'}
