"""MultiFashion: the MultiMNIST recipe (Sener & Koltun 2018) over Fashion-MNIST items.

Same construction as ``multi_mnist`` (two items on a 36x36 canvas at (0, 0)
and (8, 8), max-overlay, bilinear resize to 28x28; tasks ``left``/``right``),
as used for "MultiFashion" by Lin et al. 2019 (Pareto MTL).
"""

from mtlx.data.tfds_builders.multi_mnist import MultiMnistBase


class MultiFashion(MultiMnistBase):
    """MultiMNIST recipe over Fashion-MNIST (see module docstring)."""

    BASE = "fashion_mnist"
    HOMEPAGE = "https://github.com/zalandoresearch/fashion-mnist"
