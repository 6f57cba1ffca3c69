"""A run's pictures (matplotlib with the Agg backend, no display needed): the loss curves and confusion matrix saved
with a run, and the figures of `comp report` (returned as PNG bytes for the page to inline)."""
import io


def _plt():
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt
    return plt


def save(learn, run, valid, vocab, task='single'):
    """The loss curves, and the confusion matrix of the validation set `valid` (none without one, or without one class per image)."""
    plt = _plt()
    from sklearn.metrics import confusion_matrix
    learn.recorder.plot_loss(with_valid=valid is not None)
    plt.savefig(run.loss_plot)
    plt.close('all')
    if valid is None or task != 'single': return
    cm = confusion_matrix(valid['label'], [vocab[i] for i in valid[vocab].to_numpy().argmax(1)], labels=vocab)
    confusion(cm, vocab).savefig(run.confusion_plot)
    plt.close('all')


def current(path):
    """Save the figure matplotlib is drawing (lr_find's, say) to `path` and close it."""
    plt = _plt()
    plt.savefig(path)
    plt.close('all')


def png(fig, dpi=80):
    """The figure as PNG bytes; the figure is closed."""
    plt = _plt()
    buf = io.BytesIO()
    fig.savefig(buf, format='png', dpi=dpi)
    plt.close(fig)
    return buf.getvalue()


def confusion(cm, labels):
    """A confusion matrix figure (rows actual, columns predicted) with its counts written in."""
    plt = _plt()
    n = len(labels)
    fig, ax = plt.subplots(figsize=(min(16, max(4, 0.6 * n + 2)),) * 2)   # 120 dog breeds: a readable page, not a poster
    ax.imshow(cm, cmap='Blues')
    ax.set(xticks=range(n), yticks=range(n), xlabel='predicted', ylabel='actual')
    ax.set_xticklabels(labels, rotation=90)
    ax.set_yticklabels(labels)
    top = cm.max() if cm.size else 0
    for i in range(n if n <= 30 else 0):   # beyond 30 classes the counts are the page's table
        for j in range(n):
            ax.text(j, i, cm[i, j], ha='center', va='center', fontsize=8, color='white' if cm[i, j] > top / 2 else 'black')
    fig.tight_layout()
    return fig


def learning_curves(curves, metric_title):
    """Loss, the competition's metric and the learning rate per epoch; `curves`: (label, epochs, train_loss,
    valid_loss, metric, (lr_epochs, lrs)) per run, a list or arrays (None where a run has no such values)."""
    plt = _plt()
    fig, axs = plt.subplots(1, 3, figsize=(13, 3.6))
    for k, (label, ep, tl, vl, m, lr) in enumerate(curves):
        c = f'C{k % 10}'
        pre = f'{label} ' if label else ''
        if tl is not None: axs[0].plot(ep, tl, '--.', color=c, label=f'{pre}train')
        if vl is not None: axs[0].plot(ep, vl, '-o', color=c, label=f'{pre}valid')
        if m is not None: axs[1].plot(ep, m, '-o', color=c, label=label or None)
        if lr is not None: axs[2].plot(*lr, color=c, label=label or None)
    axs[0].set(title='loss', xlabel='epoch')
    axs[1].set(title=f'validation {metric_title}', xlabel='epoch')
    axs[2].set(title='learning rate (head)', xlabel='epoch')
    for ax in axs:
        if ax.get_legend_handles_labels()[0]: ax.legend(fontsize=7)
    fig.tight_layout()
    return fig


def reliability(bins):
    """A reliability diagram: per confidence bin (rows of lo, hi, mean confidence, observed frequency, count), what
    the model said against how often it was right, beside the diagonal of perfect calibration."""
    plt = _plt()
    fig, ax = plt.subplots(figsize=(4.5, 4.2))
    ax.plot([0, 1], [0, 1], ':', color='grey', label='calibrated')
    seen = [b for b in bins if b[4]]
    ax.bar([(b[0] + b[1]) / 2 for b in seen], [b[3] for b in seen], width=[b[1] - b[0] for b in seen],
           edgecolor='C0', alpha=0.6, label='observed')
    ax.plot([b[2] for b in seen], [b[3] for b in seen], 'o-', color='C1', label='mean confidence')
    ax.set(xlim=(0, 1), ylim=(0, 1), xlabel='predicted probability', ylabel='fraction right')
    ax.legend(fontsize=7)
    fig.tight_layout()
    return fig


def scatter(points, xlabel, ylabel):
    """Labelled points (label, x, y): validation error against training time, say."""
    plt = _plt()
    fig, ax = plt.subplots(figsize=(7, 4))
    for k, (label, x, y) in enumerate(points):
        ax.scatter([x], [y], color=f'C{k % 10}')
        ax.annotate(label, (x, y), fontsize=7, xytext=(3, 3), textcoords='offset points')
    ax.set(xlabel=xlabel, ylabel=ylabel)
    fig.tight_layout()
    return fig


def shares(labels, series):
    """Side-by-side horizontal bars of class shares; `series`: (name, shares in `labels` order) each."""
    plt = _plt()
    import numpy as np
    fig, ax = plt.subplots(figsize=(7, max(2.5, 0.35 * len(labels) + 1)))
    y, h = np.arange(len(labels)), 0.8 / max(1, len(series))
    for k, (name, v) in enumerate(series): ax.barh(y + k * h, v, height=h, label=name)
    ax.set_yticks(y + h * (len(series) - 1) / 2)
    ax.set_yticklabels(labels)
    ax.invert_yaxis()
    ax.set(xlabel='share of images')
    ax.legend(fontsize=7)
    fig.tight_layout()
    return fig
