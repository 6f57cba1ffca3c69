"""`comp demo`: the whole job on the built-in sample competition, from data to a scored submission."""
from pathlib import Path

from . import competition, predict, sample, submission, train


def demo(dir='demo', seed=42, arch='demo', quiet=False):
    """Write the sample into DIR/data (once), train the demo recipe, predict, write and score the submission."""
    dir = Path(dir)
    data = dir / 'data'
    if not (data / 'train.csv').exists(): sample.write_sample(data, seed=seed)
    comp = competition.load(data)
    competition.record(comp, dir)
    run = train.train(train.TrainConfig(arch=arch, seed=seed), workdir=dir, quiet=quiet)
    sub = predict.predict(run, workdir=dir)
    return {'run': run, 'submission': sub, 'accuracy': submission.score(comp, sub)}
