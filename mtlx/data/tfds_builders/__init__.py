"""mtlx's TFDS builders (ArrayRecord, no TensorFlow needed), one module per data set.

Importing this package registers the builders with TFDS under the names of
``BUILDERS``. Each takes ``source_dir=`` (a local directory holding the
original files; None downloads them) besides TFDS's own builder arguments.
"""

from mtlx.data.tfds_builders.census_income import CensusIncome
from mtlx.data.tfds_builders.common import CorruptSourceError, SourceFileError
from mtlx.data.tfds_builders.conll2003_tagging import Conll2003Tagging
from mtlx.data.tfds_builders.multi_fashion import MultiFashion
from mtlx.data.tfds_builders.multi_mnist import MultiMnist
from mtlx.data.tfds_builders.omniglot_alphabets import OmniglotAlphabets
from mtlx.data.tfds_builders.one_vs_all import OneVsAll, one_vs_all_accuracy

BUILDERS = {b.name: b for b in (MultiMnist, MultiFashion, OneVsAll, OmniglotAlphabets, CensusIncome, Conll2003Tagging)}

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
