"""Task sets over TFDS data: mtlx's own builders and two catalog data sets.

Each function builds its data set if needed (ArrayRecord files under
``data_dir``, TFDS's default when None), reads it through TFDS's data source
API (no TensorFlow) and returns a ``mtlx.tasks.TaskSet``. Common options:

  manual_dir  local directory of the original files; the data set's subfolder
              (``SUBDIRS``) is used when it exists, else ``manual_dir`` itself.
              None downloads the originals. Only consulted when the data set
              is not built yet in ``data_dir``.
  data_dir    TFDS data directory for the built files.
  seed        build-time randomness (validation carving, MultiMNIST pairing);
              part of the builder config, so each seed is built once.

Splits are dicts of whole numpy arrays in the batch layout, except celeb_a
(and cifar100 with ``in_memory=False``), whose splits are ``StreamingSplit``
objects: ``len(split)`` and ``split[indices]`` -> the same layout for those rows.
Images are float32 in [0, 1], (H, W, C). Unknown options or values raise
ValueError; missing or corrupt source files raise
``tfds_builders.SourceFileError`` (a FileNotFoundError) or
``CorruptSourceError`` (a ValueError) naming the file and its origin.

The functions are registered in ``mtlx.data.TASK_SETS``; their building
blocks (``built``, ``read_splits``, ``StreamingSplit``, ...) live in
``mtlx.data.tfds_reading``; ``mtlx.data``'s docstring says how to add one.
"""

from __future__ import annotations

import functools
from typing import Mapping, Sequence

import numpy as np
import tensorflow_datasets as tfds

from mtlx.data.tfds_builders import census_income as census_lib
from mtlx.data.tfds_builders import common, mnist_source
from mtlx.data.tfds_builders import conll2003_tagging as conll_lib
from mtlx.data.tfds_builders import omniglot_alphabets as omniglot_lib
from mtlx.data.tfds_builders import one_vs_all as one_vs_all_lib
from mtlx.data.tfds_builders.census_income import CensusIncome
from mtlx.data.tfds_builders.conll2003_tagging import Conll2003Tagging
from mtlx.data.tfds_builders.multi_fashion import MultiFashion
from mtlx.data.tfds_builders.multi_mnist import MultiMnist
from mtlx.data.tfds_builders.omniglot_alphabets import OmniglotAlphabets
from mtlx.data.tfds_builders.one_vs_all import OneVsAll
from mtlx.data.tfds_reading import (
    SPLITS,
    StreamingSplit,
    batch,
    builder_info,
    built,
    choice,
    images,
    read_splits,
    source_dir,
    stack,
    task_set_fn,
)
from mtlx.tasks import Task, TaskSet

one_vs_all_accuracy = one_vs_all_lib.one_vs_all_accuracy

SUBDIRS = {
    "mnist": "mnist",
    "fashion_mnist": "fashion-mnist",
    "omniglot": "omniglot",
    "census_income": "census-income",
    "conll2003": "conll2003",
    "celeb_a": "celeb_a",
    "cifar100": "cifar100",
}


# --------------------------------------------------------------------------- MNIST family


def _multi_transform(records):
    return batch(
        images(stack(records, "image")),
        {side: stack(records, side, np.int32) for side in ("left", "right")},
    )


def _multi(cls, base: str, manual_dir, data_dir, seed: int) -> TaskSet:
    builder = built(cls, cls.config_for(f"seed{seed}", seed=seed), manual_dir, SUBDIRS[base], data_dir)
    return TaskSet(
        name=builder.name,
        tasks=(Task("left", "classification", 10), Task("right", "classification", 10)),
        input_shape=(28, 28, 1),
        input_kind="image",
        splits=read_splits(builder, _multi_transform),
        info=builder_info(
            builder,
            "Sener & Koltun 2018, Multi-Task Learning as Multi-Objective Optimization",
            differences="canvas 36x36 with the second item at (8, 8) and bilinear resize (the MGDA code: offset 6, nearest)",
        ),
    )


@task_set_fn
def multi_mnist(*, manual_dir: str | None = None, data_dir: str | None = None, seed: int = 0) -> TaskSet:
    """MultiMNIST: tasks ``left`` and ``right`` (10 classes each), 28x28x1 images."""
    return _multi(MultiMnist, "mnist", manual_dir, data_dir, seed)


@task_set_fn
def multi_fashion(*, manual_dir: str | None = None, data_dir: str | None = None, seed: int = 0) -> TaskSet:
    """MultiFashion: the MultiMNIST recipe over Fashion-MNIST; tasks ``left``, ``right``."""
    return _multi(MultiFashion, "fashion_mnist", manual_dir, data_dir, seed)


def _one_vs_all_transform(records):
    return batch(images(stack(records, "image")), one_vs_all_lib.one_vs_all_targets(stack(records, "label")))


def _rows(split: dict, rows: np.ndarray) -> dict:
    """The rows ``rows`` of a batch-layout split (nested dicts of arrays)."""
    return {k: _rows(v, rows) if isinstance(v, dict) else v[rows] for k, v in split.items()}


def training_subset(n: int, fraction: float, seed: int) -> np.ndarray:
    """Sorted indices of a seeded random ``fraction`` of ``n`` training rows (at least one):
    the DMTRL protocol's "fraction of the training split, randomly sampled" (Yang & Hospedales
    2017, Sec. 4.1); ``np.random.default_rng([seed, n])``, so each seed draws its own subset."""
    if not 0.0 < fraction <= 1.0:
        raise ValueError(f"option train_fraction={fraction!r} must be in (0, 1]")
    keep = max(1, int(round(fraction * n)))
    return np.sort(np.random.default_rng([seed, n]).permutation(n)[:keep])


MULTICLASS_ACCURACY = "multiclass_accuracy"  # one_vs_all's joint metric (mtlx.tasks.TaskSet.joint_metrics)


def multiclass_accuracy(preds: Mapping, split: Mapping) -> float:
    """Yang & Hospedales 2017's metric (2) for the ten one-vs-all tasks ``is_0``..``is_9``: the class
    is the task with the highest score, the label the task whose 0/1 target is 1
    (``one_vs_all_accuracy``), over the examples every task labels (weight > 0). A joint metric
    (``TaskSet.joint_metrics``): ``preds`` {task: scores (N,) or (N, 1)}, ``split`` the whole split."""
    names = [f"is_{k}" for k in range(one_vs_all_lib.NUM_CLASSES)]
    scores = np.stack([np.asarray(preds[n]).reshape(-1) for n in names], axis=1)
    labels = np.stack([np.asarray(split["targets"][n]).reshape(-1) for n in names], axis=1).argmax(axis=1)
    keep = np.all(np.stack([np.asarray(split["weights"][n]).reshape(-1) > 0 for n in names], axis=1), axis=1)
    return one_vs_all_accuracy(scores[keep], labels[keep])


@task_set_fn
def one_vs_all(*, manual_dir: str | None = None, data_dir: str | None = None, seed: int = 0, base: str = "mnist",
               train_fraction: float = 1.0, train_seed: int = 0) -> TaskSet:
    """Ten binary tasks ``is_0``..``is_9`` on MNIST or Fashion-MNIST (Yang & Hospedales 2017).

    ``train_fraction`` < 1 keeps a random fraction of the training split, drawn by
    ``train_seed`` (``training_subset``; validation and test are unchanged).
    Its joint metric ``multiclass_accuracy`` (``MULTICLASS_ACCURACY``, the paper's metric (2)) is
    evaluated with the tasks' metrics (``multiclass_accuracy``).
    """
    choice("base", base, tuple(mnist_source.SOURCES))
    if not 0.0 < train_fraction <= 1.0:
        raise ValueError(f"option train_fraction={train_fraction!r} must be in (0, 1]")
    config = OneVsAll.config_for(f"{base}_seed{seed}", base=base, seed=seed)
    builder = built(OneVsAll, config, manual_dir, SUBDIRS[base], data_dir)
    splits = read_splits(builder, _one_vs_all_transform)
    if train_fraction < 1.0:
        n = len(splits["train"]["inputs"])
        splits["train"] = _rows(splits["train"], training_subset(n, train_fraction, train_seed))
    return TaskSet(
        name=f"one_vs_all_{base}",
        tasks=tuple(Task(f"is_{k}", "binary", 1) for k in range(one_vs_all_lib.NUM_CLASSES)),
        input_shape=(28, 28, 1),
        input_kind="image",
        splits=splits,
        info=builder_info(
            builder,
            "Yang & Hospedales 2017, Deep Multi-task Representation Learning: A Tensor Factorisation Approach",
            evaluation="multi-class accuracy = mtlx.data.tfds_sets.one_vs_all_accuracy(scores of is_0..is_9, class labels)",
            train_fraction=train_fraction, train_seed=train_seed, num_train=len(splits["train"]["inputs"]),
        ),
        joint_metrics={MULTICLASS_ACCURACY: (multiclass_accuracy, True)},
    )


# --------------------------------------------------------------------------- Omniglot


def _omniglot_transform(records, num_alphabets: int, names: Sequence[str]):
    alphabet = stack(records, "alphabet", np.int64)
    character = stack(records, "character", np.int32)
    own = alphabet[:, None] == np.arange(num_alphabets)[None, :]
    return batch(
        images(stack(records, "image")),
        {name: np.where(own[:, a], character, 0).astype(np.int32) for a, name in enumerate(names)},
        {name: own[:, a].astype(np.float32) for a, name in enumerate(names)},
    )


def omniglot_resplit(splits: dict, names: Sequence[str], test_fraction: float, seed: int) -> dict:
    """The DMTRL Omniglot protocol (Yang & Hospedales 2017, Sec. 4.3): pool every drawing, then per
    character a seeded ``test_fraction`` of its drawings (at least one) is the test split and the
    rest the training split; no validation split (the paper has none). The permutation of one
    character's drawings comes from ``np.random.default_rng([seed, alphabet, character])``."""
    if not 0.0 < test_fraction < 1.0:
        raise ValueError(f"option test_fraction={test_fraction!r} must be in (0, 1) (0 = the builder's split)")
    allrows = {k: np.concatenate([splits[s][k] for s in SPLITS]) if k == "inputs" else
               {t: np.concatenate([splits[s][k][t] for s in SPLITS]) for t in names}
               for k in ("inputs", "targets", "weights")}
    alphabet = np.stack([allrows["weights"][t] for t in names], 1).argmax(1)
    character = np.stack([allrows["targets"][t] for t in names], 1)[np.arange(len(alphabet)), alphabet]
    test = np.zeros(len(alphabet), bool)
    for a, c in sorted(set(zip(alphabet.tolist(), character.tolist()))):
        rows = np.flatnonzero((alphabet == a) & (character == c))
        n_test = max(1, int(round(test_fraction * len(rows)))) if len(rows) > 1 else 0
        test[rows[np.random.default_rng([seed, a, c]).permutation(len(rows))[:n_test]]] = True
    return {"train": _rows(allrows, np.flatnonzero(~test)), "test": _rows(allrows, np.flatnonzero(test))}


@task_set_fn
def omniglot_alphabets(
    *, manual_dir: str | None = None, data_dir: str | None = None, seed: int = 0, subset: str = "all",
    test_fraction: float = 0.0, split_seed: int = 0,
) -> TaskSet:
    """One classification task per Omniglot alphabet; each example is labelled for its own alphabet only.

    ``subset``: 'all' (50 alphabets, the paper's), 'background', 'evaluation',
    'small1', 'small2', 'small' (small1 + small2: 8 distinct alphabets).
    ``test_fraction`` 0 keeps the builder's per-character 70/15/15 split; in (0, 1)
    it re-splits every character's drawings into train / test (``omniglot_resplit``,
    drawn by ``split_seed``; the paper's protocol, no validation split).
    """
    choice("subset", subset, tuple(omniglot_lib.SUBSETS))
    if test_fraction != 0.0 and not 0.0 < test_fraction < 1.0:
        raise ValueError(f"option test_fraction={test_fraction!r} must be 0 (the builder's split) or in (0, 1)")
    config = OmniglotAlphabets.config_for(f"{subset}_seed{seed}", subset=subset, seed=seed)
    builder = built(OmniglotAlphabets, config, manual_dir, SUBDIRS["omniglot"], data_dir)
    meta = builder.info.metadata
    names = [omniglot_lib.task_name(a) for a in meta["alphabets"]]
    transform = functools.partial(_omniglot_transform, num_alphabets=len(names), names=names)
    splits = read_splits(builder, transform)
    if test_fraction:
        splits = omniglot_resplit(splits, names, test_fraction, split_seed)
    return TaskSet(
        name=f"omniglot_alphabets_{subset}",
        tasks=tuple(Task(n, "classification", k) for n, k in zip(names, meta["num_characters"])),
        input_shape=(28, 28, 1),
        input_kind="image",
        splits=splits,
        info=builder_info(
            builder,
            "Yang & Hospedales 2017, Deep Multi-task Representation Learning: A Tensor Factorisation Approach",
            alphabets=dict(zip(names, meta["alphabets"])),
            labels="targets of the other alphabets' tasks are 0 with weight 0",
            differences="" if subset == "all" else f"subset {subset!r}: not the paper's 50 alphabets",
            test_fraction=test_fraction, split_seed=split_seed,
            num_resplit={s: len(v["inputs"]) for s, v in splits.items()} if test_fraction else None,
        ),
    )


# --------------------------------------------------------------------------- Census-Income


def _census_transform(records, tasks: Sequence[str]):
    return batch(stack(records, "features", np.float32), {t: stack(records, t, np.float32) for t in tasks})


@task_set_fn
def census_income(*, manual_dir: str | None = None, data_dir: str | None = None, seed: int = 0, group: int = 1) -> TaskSet:
    """MMoE's Census-Income task pairs: group 1 = (income_50k, never_married), 2 = (college, never_married)."""
    choice("group", group, tuple(census_lib.GROUPS))
    config = CensusIncome.config_for(f"seed{seed}", seed=seed)
    builder = built(CensusIncome, config, manual_dir, SUBDIRS["census_income"], data_dir)
    meta = builder.info.metadata
    tasks = census_lib.GROUPS[group]
    return TaskSet(
        name=f"census_income_group{group}",
        tasks=tuple(Task(t, "binary", 1) for t in tasks),
        input_shape=(len(meta["feature_names"]),),
        input_kind="dense",
        splits=read_splits(builder, functools.partial(_census_transform, tasks=tasks)),
        info=builder_info(
            builder,
            "Ma et al. 2018, Modeling Task Relationships in Multi-task Learning with Multi-gate Mixture-of-Experts",
            group=group,
            feature_names=list(meta["feature_names"]),
            standardisation={k: list(meta["encoder"][k]) for k in ("mean", "std")} | {"columns": list(meta["encoder"]["numeric"])},
            college_degrees=list(meta["college_degrees"]),
            inputs="7 standardised numeric columns + one-hot categorical columns (training vocabulary; unseen -> zeros); "
            "income_50k, marital_stat, education and instance_weight removed",
        ),
    )


# --------------------------------------------------------------------------- CoNLL-2003


def _pad(seqs: Sequence[np.ndarray], length: int, fill: int) -> np.ndarray:
    out = np.full((len(seqs), length), fill, np.int32)
    for i, s in enumerate(seqs):
        out[i, : min(len(s), length)] = s[:length]
    return out


def _char_grid(chars: np.ndarray, lengths: np.ndarray, max_len: int, max_word_len: int) -> np.ndarray:
    """Flat character ids of one sentence -> (max_len, max_word_len), 0-padded, truncated."""
    out = np.zeros((max_len, max_word_len), np.int32)
    for j, word in enumerate(np.split(chars, np.cumsum(lengths)[:-1])[:max_len]):
        out[j, : min(len(word), max_word_len)] = word[:max_word_len]
    return out


def _conll_transform(records, max_len: int, max_word_len: int, vocab_size: int, tasks: Sequence[str] = conll_lib.TASKS):
    words = [np.where(np.asarray(r["words"]) < vocab_size, r["words"], conll_lib.UNK) for r in records]
    chars = np.stack([_char_grid(r["chars"], r["word_lengths"], max_len, max_word_len) for r in records])
    targets = {t: _pad([r[t] for r in records], max_len, -1) for t in tasks}
    return batch(_pad(words, max_len, conll_lib.PAD), targets, chars=chars)


def _conll_options(tasks, **sizes) -> tuple[str, ...]:
    """Checks conll2003_tagging's size options (one ValueError naming the option); the tasks as a tuple."""
    for option in ("max_len", "max_word_len", "min_count"):
        if not isinstance(sizes[option], int) or sizes[option] < 1:
            raise ValueError(f"option {option}={sizes[option]!r} must be a positive integer")
    for option, low in (("max_vocab", 3), ("max_sentences", 1)):
        if not isinstance(sizes[option], int) or (sizes[option] != 0 and sizes[option] < low):
            raise ValueError(f"option {option}={sizes[option]!r} must be 0 (no limit) or an integer >= {low}")
    tasks = (tasks,) if isinstance(tasks, str) else tuple(tasks)
    if not tasks or len(set(tasks)) != len(tasks) or not set(tasks) <= set(conll_lib.TASKS):
        raise ValueError(f"option tasks={list(tasks)!r} is not valid; choose distinct names from {list(conll_lib.TASKS)}")
    return tasks


def _first_sentences(splits: dict, n: int) -> dict:
    """Each streaming split materialised whole (n = 0) or its first ``n`` rows."""
    return {s: (v.materialise() if not n else v[np.arange(min(n, len(v)))]) for s, v in splits.items()}


@task_set_fn
def conll2003_tagging(
    *,
    manual_dir: str | None = None,
    data_dir: str | None = None,
    seed: int = 0,
    max_len: int = 64,
    max_word_len: int = 16,
    min_count: int = 1,
    tasks: Sequence[str] = conll_lib.TASKS,
    max_vocab: int = 0,
    max_sentences: int = 0,
) -> TaskSet:
    """CoNLL-2003 POS, chunk and NER tagging; inputs (max_len,) word ids, ``chars`` (max_len, max_word_len).

    Words of the training split seen fewer than ``min_count`` times become OOV
    (id 1); sentences longer than ``max_len`` are truncated, shorter ones padded
    (inputs 0, targets -1). ``tasks``: which of pos, chunk, ner, in the
    order given (e.g. ('chunk', 'pos') for a main task and one
    auxiliary task). Each task's ``labels`` are its tag names, so chunk and
    ner (IOB tags) report span F1 as well as token accuracy. ``max_vocab``
    (0: no cap) keeps at most that many word ids, the rarer words becoming
    OOV, so that an embed block of ``vocab_size=max_vocab`` rows fits whatever
    the files hold. ``max_sentences`` (0: all) keeps the first that many
    sentences of each split (smoke runs). ``seed`` is unused (the splits are
    the files).
    """
    tasks = _conll_options(tasks, max_len=max_len, max_word_len=max_word_len, min_count=min_count,
                           max_vocab=max_vocab, max_sentences=max_sentences)
    builder = built(Conll2003Tagging, None, manual_dir, SUBDIRS["conll2003"], data_dir)
    meta = builder.info.metadata
    counts = np.asarray(meta["word_counts"])
    vocab_size = 2 + int(np.sum(counts[2:] >= min_count))  # ids are ranked by count
    vocab_size = min(vocab_size, max_vocab) if max_vocab else vocab_size
    transform = functools.partial(_conll_transform, max_len=max_len, max_word_len=max_word_len, vocab_size=vocab_size,
                                  tasks=tasks)
    lengths = {s: np.asarray(meta["sentence_lengths"][s]) for s in SPLITS}
    labels = {t: tuple(meta["labels"][t]) for t in tasks}
    return TaskSet(
        name="conll2003_tagging" if tasks == conll_lib.TASKS else f"conll2003_tagging_{'_'.join(tasks)}",
        tasks=tuple(Task(t, "tagging", len(labels[t]), labels[t]) for t in tasks),
        input_shape=(max_len,),
        input_kind="tokens",
        vocab_size=vocab_size,
        splits=_first_sentences(read_splits(builder, transform, in_memory=False), max_sentences),
        info=builder_info(
            builder,
            "CoNLL-2003 (Tjong Kim Sang & De Meulder 2003) POS/chunk/NER, as in Søgaard & Goldberg 2016 and Ruder et al. 2019",
            labels={t: list(v) for t, v in labels.items()},
            evaluation="chunk and ner: span F1 as conlleval computes it (IOB1 or IOB2 as the files have it; mtlx.losses.span_f1), "
            "over the first max_len tokens of each sentence; pos: token accuracy",
            char_vocab_size=len(meta["chars"]),
            max_len=max_len,
            max_word_len=max_word_len,
            min_count=min_count,
            max_sentences=max_sentences or None,
            truncated_sentences={s: int(np.sum(lengths[s][: max_sentences or None] > max_len)) for s in SPLITS},
            inputs="word ids (lower-cased, digits -> 0; 0 pad, 1 OOV) and split['chars'] character ids (0 pad, 1 unknown)",
        ),
    )


# --------------------------------------------------------------------------- TFDS catalog data sets


def _catalog_sources(name: str, splits: Sequence[str], manual_dir, data_dir) -> dict:
    """``{split: data source}`` of a TFDS catalog data set (prepared on first use)."""
    kwargs = {}
    if manual_dir is not None:
        config = tfds.download.DownloadConfig(manual_dir=str(source_dir(manual_dir, SUBDIRS[name])))
        kwargs["download_and_prepare_kwargs"] = {"download_config": config}
    return dict(zip(splits, tfds.data_source(name, split=list(splits), data_dir=data_dir, **kwargs)))


def _celeb_a_transform(records, attributes: Sequence[str], size: tuple[int, int]):
    return batch(
        images(stack(records, "image"), size),
        {a: np.asarray([r["attributes"][a] for r in records], np.float32) for a in attributes},
    )


@task_set_fn
def celeb_a(*, manual_dir: str | None = None, data_dir: str | None = None, seed: int = 0, image_size: int = 64) -> TaskSet:
    """CelebA's 40 binary attributes as tasks (Sener & Koltun 2018); splits stream from TFDS.

    Images are resized (PIL bilinear, no crop) from 218x178 to image_size x
    image_size. ``seed`` is unused (CelebA has its own validation split).
    Preparing ``celeb_a`` the first time needs TFDS's own builder (TensorFlow
    and Google Drive downloads); reading a prepared data_dir does not.
    """
    if not isinstance(image_size, int) or image_size < 1:
        raise ValueError(f"option image_size={image_size!r} must be a positive integer")
    sources = _catalog_sources("celeb_a", SPLITS, manual_dir, data_dir)
    attributes = tuple(sources["train"].dataset_info.features["attributes"].keys())
    transform = functools.partial(_celeb_a_transform, attributes=attributes, size=(image_size, image_size))
    return TaskSet(
        name="celeb_a",
        tasks=tuple(Task(a, "binary", 1) for a in attributes),
        input_shape=(image_size, image_size, 3),
        input_kind="image",
        splits={s: StreamingSplit(sources[s], transform) for s in SPLITS},
        info={
            "paper": "Sener & Koltun 2018 (CelebA, 40 attribute tasks)",
            "builder": "celeb_a (TFDS catalog)",
            "num_examples": {s: len(sources[s]) for s in SPLITS},
            "splits": "CelebA's official train/validation/test",
            "inputs": f"images resized to {image_size}x{image_size} (bilinear, aspect not kept)",
        },
    )


def _cifar100_transform(records):
    return batch(
        images(stack(records, "image")),
        {"coarse": stack(records, "coarse_label", np.int32), "fine": stack(records, "label", np.int32)},
    )


@task_set_fn
def cifar100(
    *,
    manual_dir: str | None = None,
    data_dir: str | None = None,
    seed: int = 0,
    validation_fraction: float = 0.1,
    in_memory: bool = True,
) -> TaskSet:
    """CIFAR-100 with tasks ``coarse`` (20 superclasses) and ``fine`` (100 classes).

    Validation is a seeded ``validation_fraction`` of the training images;
    ``in_memory=False`` keeps the splits streaming from TFDS.
    """
    if not 0 < validation_fraction < 1:
        raise ValueError(f"option validation_fraction={validation_fraction!r} must be in (0, 1)")
    sources = _catalog_sources("cifar100", ("train", "test"), manual_dir, data_dir)
    train, val = common.carve(len(sources["train"]), [1 - validation_fraction, validation_fraction], seed)
    splits = {
        "train": StreamingSplit(sources["train"], _cifar100_transform, train),
        "validation": StreamingSplit(sources["train"], _cifar100_transform, val),
        "test": StreamingSplit(sources["test"], _cifar100_transform),
    }
    return TaskSet(
        name="cifar100",
        tasks=(Task("coarse", "classification", 20), Task("fine", "classification", 100)),
        input_shape=(32, 32, 3),
        input_kind="image",
        splits={s: v.materialise() for s, v in splits.items()} if in_memory else splits,
        info={
            "paper": "CIFAR-100 coarse/fine as two tasks",
            "builder": "cifar100 (TFDS catalog)",
            "num_examples": {s: len(v) for s, v in splits.items()},
            "splits": f"validation = seeded {validation_fraction:.0%} of train (seed {seed}); test = the test split",
        },
    )


def __getattr__(name: str):
    """``TFDS_TASK_SETS``, the old second registry, kept readable for this release: use ``mtlx.data.TASK_SETS``."""
    if name == "TFDS_TASK_SETS":
        from mtlx.data import TASK_SETS

        return {k: fn for k, fn in TASK_SETS.items() if fn.__module__ == __name__}
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
