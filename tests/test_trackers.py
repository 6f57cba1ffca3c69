"""--tracker: a 2-epoch run's metrics read back from each tracker's offline files with the tracker's own reader
(TensorBoard's EventAccumulator, MLflow's MlflowClient, W&B's protobuf records), and the one-line refusals."""
import json
import os
import struct
import subprocess
import sys
from pathlib import Path

import pytest

from comp import competition, config, runs, train
from conftest import one_line

pytestmark = pytest.mark.slow
TINY = dict(arch='test_convnext', epochs=2, workers=0, size='32', resize='squish:32', bs=8)


@pytest.fixture(scope='module')
def ws(tiny_sample, tmp_path_factory):
    ws = tmp_path_factory.mktemp('trackers')
    competition.record(competition.load(tiny_sample), ws)
    return ws


def tracked(ws, tracker, monkeypatch):
    monkeypatch.chdir(ws)   # MLflow's and W&B's defaults are relative to here: the test's folder, never the user's
    return train.train(config.TrainConfig(**TINY, tracker=tracker), workdir=ws, quiet=True)


def epochs(run):
    return [float(v) for v in run.metrics()['valid_loss']]


def test_tensorboard_event_files_hold_each_epoch(ws, monkeypatch):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    run = tracked(ws, 'tensorboard', monkeypatch)
    acc = EventAccumulator(str(run / 'tensorboard'), size_guidance={'images': 0, 'scalars': 0})
    acc.Reload()
    assert [e.value for e in acc.Scalars('valid_loss')] == pytest.approx(epochs(run), rel=1e-5)
    assert len(acc.Scalars('error_rate')) == 2
    assert {'loss', 'confusion'} <= set(acc.Tags()['images'])   # the run's plots
    assert run.status == 'complete'


def test_mlflow_store_holds_params_and_each_epoch(ws, monkeypatch):
    from mlflow.tracking import MlflowClient
    monkeypatch.delenv('MLFLOW_TRACKING_URI', raising=False)
    run = tracked(ws, 'mlflow', monkeypatch)
    client = MlflowClient(f'sqlite:///{ws / "mlflow.db"}')   # the workspace's store, where none is configured
    found, = client.search_runs([client.get_experiment_by_name('paddy').experiment_id],
                                f"tags.`comp.run` = '{Path(run).resolve()}'")
    hist = client.get_metric_history(found.info.run_id, 'valid_loss')
    assert [m.step for m in hist] == [1, 2]
    assert [m.value for m in hist] == pytest.approx(epochs(run), rel=1e-5)
    assert found.data.params['arch'] == run.config['arch'] and found.info.status == 'FINISHED'
    arts = {a.path for a in client.list_artifacts(found.info.run_id, 'plots')}
    assert 'plots/loss.png' in arts


def wandb_records(path):
    """W&B's protobuf records from an offline run's .wandb file. wandb 0.31 has no Python reader of its own (its Go
    core writes the file), so this reads the framing it documents, LevelDB's log format: a 7-byte W&B header, then
    32 KiB blocks of records, each a 7-byte header (crc32c, length, type: full, first, middle, last) and its bytes."""
    from wandb.proto import wandb_internal_pb2 as pb
    data, out, part, pos = Path(path).read_bytes(), [], b'', 7
    while pos + 7 <= len(data):
        left = 32768 - pos % 32768
        if left < 7:
            pos += left
            continue
        _, n, kind = struct.unpack('<IHB', data[pos:pos + 7])
        if kind == 0: break
        part += data[pos + 7:pos + 7 + n]
        pos += 7 + n
        if kind in (1, 4):
            rec = pb.Record()
            rec.ParseFromString(part)
            out.append(rec)
            part = b''
    return out


def test_wandb_offline_run_holds_config_and_each_epoch(ws, monkeypatch):
    monkeypatch.setenv('WANDB_MODE', 'offline')
    run = tracked(ws, 'wandb', monkeypatch)
    f, = (run / 'wandb').glob('offline-run-*/run-*.wandb')
    recs = wandb_records(f)
    key = lambda i: i.key or '/'.join(i.nested_key)
    history = [{key(i): json.loads(i.value_json) for i in r.history.item} for r in recs if r.WhichOneof('record_type') == 'history']
    assert [h['valid_loss'] for h in history if 'valid_loss' in h] == pytest.approx(epochs(run), rel=1e-5)
    conf = {key(i): json.loads(i.value_json) for r in recs if r.WhichOneof('record_type') == 'run' for i in r.run.config.update}
    assert conf['arch'] == run.config['arch'] and json.loads(conf['size']) == run.config['size']
    assert not (Path.cwd() / 'wandb').exists()   # inside the run, not the working folder


def test_a_missing_tracker_package_is_one_line(ws):
    # the package hidden as Python itself hides one (a None in sys.modules): `import wandb` then fails
    code = ("import sys; sys.modules['wandb'] = None; sys.argv = ['comp', 'train', '--arch', 'test_convnext', "
            "'--epochs', '1', '--workers', '0', '--tracker', 'wandb']; from comp.cli import main; main()")
    n = len(runs.all_runs(ws))
    r = subprocess.run([sys.executable, '-c', code], cwd=ws, capture_output=True, text=True, env=os.environ.copy())
    one_line(r, '--tracker wandb', 'pip install "comp[wandb]"')
    assert len(runs.all_runs(ws)) == n   # before any run exists
    r = subprocess.run([sys.executable, '-m', 'comp', 'train', '--tracker', 'neptune'], cwd=ws, capture_output=True, text=True)
    one_line(r, '--tracker neptune', 'tensorboard, wandb, mlflow')


def test_a_failing_tracker_does_not_lose_the_run(ws, monkeypatch, capfd):
    monkeypatch.chdir(ws)   # MLflow's default artifact folder is relative to here
    (ws / 'a-file').write_text('')
    monkeypatch.setenv('MLFLOW_TRACKING_URI', f'sqlite:///{ws}/a-file/mlflow.db')   # a store that cannot be made
    run = train.train(config.TrainConfig(**{**TINY, 'epochs': 1}, tracker='mlflow'), workdir=ws, quiet=True)
    assert run.status == 'complete' and run.result['valid_error'] is not None
    err = capfd.readouterr().err
    assert 'tracker mlflow failed at start' in err and 'the run goes on without it' in err
