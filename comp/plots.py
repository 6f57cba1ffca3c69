"""A run's pictures: the loss curves and the validation confusion matrix (matplotlib, no display needed)."""


def save(learn, run, valid, vocab, task='single'):
    """The loss curves, and the confusion matrix of the validation set `valid` (none without one, or without one class per image)."""
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt
    from sklearn.metrics import confusion_matrix
    learn.recorder.plot_loss(with_valid=valid is not None)
    plt.savefig(run.loss_plot)
    plt.close('all')
    if valid is None or task != 'single': return
    cm = confusion_matrix(valid['label'], [vocab[i] for i in valid[vocab].to_numpy().argmax(1)], labels=vocab)
    fig, ax = plt.subplots(figsize=(8, 8))
    ax.imshow(cm, cmap='Blues')
    ax.set(xticks=range(len(vocab)), yticks=range(len(vocab)), xlabel='predicted', ylabel='actual')
    ax.set_xticklabels(vocab, rotation=90)
    ax.set_yticklabels(vocab)
    for i in range(len(vocab)):
        for j in range(len(vocab)): ax.text(j, i, cm[i, j], ha='center', va='center', fontsize=8)
    fig.tight_layout()
    fig.savefig(run.confusion_plot)
    plt.close('all')


def current(path):
    """Save the figure matplotlib is drawing (lr_find's, say) to `path` and close it."""
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt
    plt.savefig(path)
    plt.close('all')
