"""mtlx's TFDS builders (ArrayRecord, no TensorFlow needed), one module per data set.

A builder is a ``common.Builder`` subclass in its own module; defining the
class registers it with TFDS and in ``BUILDERS`` (TFDS name -> class), so a new
builder needs no line here (see ``mtlx.data`` for the steps). Each takes
``source_dir=`` (a local directory holding the original files; None downloads
them) besides TFDS's own builder arguments. The names below are re-exported
for convenience.
"""

from mtlx.data.tfds_builders.common import BUILDERS, CorruptSourceError, SourceFileError
from mtlx.data.tfds_builders.census_income import CensusIncome
from mtlx.data.tfds_builders.conll2003_tagging import Conll2003Tagging
from mtlx.data.tfds_builders.multi_fashion import MultiFashion
from mtlx.data.tfds_builders.multi_mnist import MultiMnist
from mtlx.data.tfds_builders.omniglot_alphabets import OmniglotAlphabets
from mtlx.data.tfds_builders.one_vs_all import OneVsAll, one_vs_all_accuracy

__all__ = [
    "BUILDERS",
    "CensusIncome",
    "Conll2003Tagging",
    "CorruptSourceError",
    "MultiFashion",
    "MultiMnist",
    "OmniglotAlphabets",
    "OneVsAll",
    "SourceFileError",
    "one_vs_all_accuracy",
]
