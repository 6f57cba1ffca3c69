"""`comp demo`: the whole job on the built-in sample competition, from data to a scored ensemble submission."""
from pathlib import Path

from . import competition, config, predict, sample, submission, train
from .ensemble import ensemble

# Two small from-scratch models on the same shared split: different input sizes make them disagree usefully.
DEMO_RUNS = [dict(arch='demo'), dict(arch='demo', size=80, resize=('squish', 112), epochs=12)]
DEMO_TTA = 4


def demo(dir='demo', seed=42, quiet=False):
    """Write the sample into DIR/data (once), train two runs, predict with TTA, ensemble and score them."""
    dir = Path(dir)
    data = dir / 'data'
    if not (data / 'train.csv').exists(): sample.write_sample(data, seed=seed)
    comp = competition.load(data)
    competition.record(comp, dir)
    out = []
    for kw in DEMO_RUNS:
        run = train.train(config.TrainConfig(seed=seed, **kw), workdir=dir, quiet=quiet)
        plain = predict.predict(run, workdir=dir)['submission']
        tta = predict.predict(run, tta=DEMO_TTA, workdir=dir)['submission']
        out.append({'run': run, 'accuracy': submission.score(plain, comp), 'accuracy_tta': submission.score(tta, comp)})
    ens = ensemble([r['run'] for r in out], tta=DEMO_TTA, workdir=dir)
    sub = ens['submission']
    return {'runs': out, 'submission': sub, 'accuracy': submission.score(sub, comp), 'ensemble': ens}
