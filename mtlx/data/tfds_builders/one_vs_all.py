"""One-vs-all MNIST / Fashion-MNIST (Yang & Hospedales 2017, "Deep Multi-task
Representation Learning: A Tensor Factorisation Approach", ICLR).

Ten binary tasks ``is_0`` .. ``is_9`` on the same images: task k asks whether
the image is of class k. The builder stores each image with its class label;
the task set derives the ten 0/1 targets. Evaluation ranks the ten task
scores to a multi-class prediction (``one_vs_all_accuracy``). The validation
split is a seeded 10% of the training images. Config names are
``<base>_seed<seed>`` with base 'mnist' or 'fashion_mnist'.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import tensorflow_datasets as tfds

from mtlx.data.tfds_builders import common, mnist_source

NUM_CLASSES = 10


def one_vs_all_accuracy(scores, labels) -> float:
    """Multi-class accuracy of ten one-vs-all scores: argmax over the (N, 10) scores vs the (N,) labels."""
    scores, labels = np.asarray(scores), np.asarray(labels)
    if scores.ndim != 2 or scores.shape[1] != NUM_CLASSES or labels.shape != scores.shape[:1]:
        raise ValueError(f"one_vs_all_accuracy needs scores (N, {NUM_CLASSES}) and labels (N,), got {scores.shape} and {labels.shape}")
    return float(np.mean(scores.argmax(axis=1) == labels)) if len(labels) else float("nan")


def one_vs_all_targets(labels) -> dict[str, np.ndarray]:
    """``{'is_k': float32 (N,) 0/1}`` for k = 0..9."""
    labels = np.asarray(labels)
    return {f"is_{k}": (labels == k).astype(np.float32) for k in range(NUM_CLASSES)}


@dataclasses.dataclass(eq=False)
class OneVsAllConfig(common.SeedConfig):
    base: str = "mnist"


class OneVsAll(common.Builder):
    """Images + class labels of MNIST or Fashion-MNIST for the ten one-vs-all tasks."""

    BUILDER_CONFIG_CLASS = OneVsAllConfig
    BUILDER_CONFIGS = [OneVsAllConfig(name=f"{b}_seed0", base=b, seed=0) for b in mnist_source.SOURCES]
    HOMEPAGE = "https://arxiv.org/abs/1605.06391"
    CITATION = "Yang & Hospedales, Deep Multi-task Representation Learning: A Tensor Factorisation Approach, ICLR 2017."

    def _info(self):
        return self.make_info(
            {"image": common.image_feature((28, 28, 1)), "label": tfds.features.ClassLabel(num_classes=NUM_CLASSES)},
            description=__doc__,
        )

    def _split_generators(self, dl_manager):
        cfg = self.builder_config
        data, provenance = mnist_source.load(cfg.base, self.source_dir, dl_manager, self.name)
        self.info.metadata.update(
            source=provenance,
            base=cfg.base,
            splits=f"validation = seeded {mnist_source.VALIDATION_FRACTION:.0%} of the training images; test = the test images",
            seed=cfg.seed,
        )
        return {name: self._generate_examples(*arrays) for name, arrays in mnist_source.three_splits(data, cfg.seed).items()}

    def _generate_examples(self, images, labels):
        for i in range(len(labels)):
            yield i, {"image": images[i][..., None], "label": int(labels[i])}
