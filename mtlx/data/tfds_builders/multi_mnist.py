"""MultiMNIST (Sener & Koltun 2018, "Multi-Task Learning as Multi-Objective Optimization").

Each example overlays two digits on a 36x36 canvas: the example's own digit
with its top-left corner at (0, 0), a partner digit at (8, 8) (bottom-right);
overlapping pixels take the max; the canvas is resized to 28x28 (PIL bilinear,
antialiased). Tasks: ``left`` = label of the top-left digit, ``right`` = label
of the bottom-right one. The partner of example i is image ``perm[i]`` of a
seeded permutation of the same split, so every image appears once on each
side. The validation split is carved from the training images (10%) before
pairing, so no source image is shared between splits.

Differences to the paper's code (MGDA repository): it used a 36x36 canvas with
offset 6 and nearest-neighbour resizing; here the offset is 8 (the digit touches
the corner) and the resize is bilinear.
"""

from __future__ import annotations

import numpy as np
import tensorflow_datasets as tfds

from mtlx.data.tfds_builders import common, mnist_source

CANVAS = 36
OFFSET = 8
OUT_SIZE = 28


def overlay(top_left: np.ndarray, bottom_right: np.ndarray, canvas: int = CANVAS, offset: int = OFFSET) -> np.ndarray:
    """(..., 28, 28) uint8 pair -> (..., canvas, canvas): A at (0, 0), B at (offset, offset), max where they overlap."""
    h, w = top_left.shape[-2:]
    out = np.zeros(top_left.shape[:-2] + (canvas, canvas), np.uint8)
    out[..., :h, :w] = top_left
    out[..., offset : offset + h, offset : offset + w] = np.maximum(out[..., offset : offset + h, offset : offset + w], bottom_right)
    return out


def compose(images: np.ndarray, labels: np.ndarray, seed: int, split_key: int):
    """Pairs every image with a seeded partner of the same split.

    Returns ``(multi (N, 28, 28, 1) uint8, left (N,), right (N,))``.
    """
    partner = np.random.default_rng([seed, split_key]).permutation(len(labels))
    canvases = overlay(images, images[partner])
    multi = np.stack([common.resize_uint8(c, (OUT_SIZE, OUT_SIZE)) for c in canvases]) if len(canvases) else np.zeros((0, OUT_SIZE, OUT_SIZE), np.uint8)
    return multi[..., None], labels, labels[partner]


class MultiMnistBase(common.Builder, skip_registration=True):
    """MultiMNIST recipe over one base data set (``BASE`` in mnist_source.SOURCES)."""

    BASE = "mnist"
    BUILDER_CONFIGS = [common.SeedConfig(name="seed0", seed=0)]
    HOMEPAGE = "https://arxiv.org/abs/1810.04650"
    CITATION = "Sener & Koltun, Multi-Task Learning as Multi-Objective Optimization, NeurIPS 2018."

    def _info(self):
        return self.make_info(
            {
                "image": common.image_feature((OUT_SIZE, OUT_SIZE, 1)),
                "left": tfds.features.ClassLabel(num_classes=10),
                "right": tfds.features.ClassLabel(num_classes=10),
            },
            description=__doc__,
        )

    def _split_generators(self, dl_manager):
        data, provenance = mnist_source.load(self.BASE, self.source_dir, dl_manager, self.name)
        splits = mnist_source.three_splits(data, self.builder_config.seed)
        self.info.metadata.update(
            source=provenance,
            splits=f"validation = seeded {mnist_source.VALIDATION_FRACTION:.0%} of the training images; test = the test images; partners drawn within each split",
            seed=self.builder_config.seed,
        )
        return {name: self._generate_examples(*arrays, key) for key, (name, arrays) in enumerate(splits.items())}

    def _generate_examples(self, images, labels, split_key):
        multi, left, right = compose(images, labels, self.builder_config.seed, split_key)
        for i in range(len(left)):
            yield i, {"image": multi[i], "left": int(left[i]), "right": int(right[i])}


class MultiMnist(MultiMnistBase):
    """MultiMNIST over MNIST digits (see module docstring)."""

    BASE = "mnist"
