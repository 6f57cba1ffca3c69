"""Decode once: the deterministic item-level part of the pipeline (decode + resize) cached as uint8.

Each image is decoded and resized the first time it is read; later epochs and TTA passes read the uint8
tensor back from a memory-mapped file that the DataLoader's worker processes share. Random augmentation
stays on the batch (on the GPU when there is one). Imports fastai: load it only when building DataLoaders."""
import os
import tempfile
from pathlib import Path

import numpy as np
import torch
from fastai.vision.all import PILImage, TensorImage, ToTensor, Transform

class CachedImage(Transform):
    """path -> TensorImage (uint8, CHW) after `resize`, computed once per image and shared across workers."""

    def __init__(self, paths, resize, cache_dir=None):
        self.resize, self.to_tensor = resize, ToTensor()
        self.index = {str(p): i for i, p in enumerate(paths)}
        w, h = resize.size  # fastai's Resize keeps its size as (width, height)
        self.shape = (len(self.index), 3, int(h), int(w))
        d = cache_dir or tempfile.gettempdir()
        fd, self.file = tempfile.mkstemp(prefix='comp-cache-', suffix='.u8', dir=d)
        os.close(fd)
        self.pixels = np.memmap(self.file, np.uint8, 'w+', shape=self.shape)
        # A separate flag file: set only after the pixels are written, so a reader never sees half an image.
        self.flag_file = self.file + '.done'
        self.done = np.memmap(self.flag_file, np.uint8, 'w+', shape=(max(1, self.shape[0]),))
        self.decodes_count, self._owner = 0, os.getpid()

    def load(self, path):
        """The uncached item pipeline: decode, resize (validation mode: deterministic), to a uint8 tensor."""
        self.decodes_count += 1
        img = self.resize(PILImage.create(path), split_idx=1)
        return self.to_tensor(img)

    def encodes(self, path: (str, Path)):
        i = self.index.get(str(path))
        if i is not None and self.done[i]:
            return TensorImage(torch.from_numpy(np.array(self.pixels[i])))
        t = self.load(path)
        if i is not None and tuple(t.shape) == self.shape[1:]:
            self.pixels[i] = t.numpy()
            self.done[i] = 1
        return t

    def __del__(self):
        # Worker processes share the files; only the process that made them removes them.
        if os.getpid() != getattr(self, '_owner', None): return
        for f in (self.file, self.flag_file):
            try: os.unlink(f)
            except OSError: pass
