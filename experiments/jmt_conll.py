r"""The joint many-task model on CoNLL-2003: POS -> chunking -> NER stacked in a hierarchy.

  python -m launch.run --config experiments/jmt_conll.py
  python -m launch.table results/jmt_conll
  python -m launch.run --config experiments/jmt_conll.py:smoke --workdir /tmp/jmt_smoke   # seconds, no data

The data are read from ``../shared/data/conll2003`` (as experiments/sluice_conll.py; see there for the
split sizes and the preprocessing). ``:smoke`` trains every entry for 20 steps on a synthetic tagging
set made here (``synthetic_tagging``: no file, no download) whose three tasks form the same kind of
hierarchy: each word's POS tag (a fifth of the words ambiguous, resolved by the tag before), chunks as
the maximal runs of POS groups, entities as the noun-phrase chunks holding a name word.

Paper. Hashimoto, Xiong, Tsuruoka & Socher 2017 (EMNLP, "A Joint Many-Task Model: Growing a Neural
Network for Multiple NLP Tasks"): one BiLSTM layer per task, POS at the bottom, then chunking,
dependency parsing, relatedness and entailment; each layer reads the word representation, the layer
below and the lower task's label embedding; trained task by task in each epoch with the successive
regularisation delta * ||theta - theta'||^2 towards the lower layers' parameters after the previous
task's pass. We keep its two lowest levels and put NER on top (CoNLL-2003 carries the three tags on
the same sentences); mtlx/architectures/jmt.py says how the per-task passes reduce to mtlx's joint
step (the anchor refreshed once per epoch, ``period`` = steps per epoch).

Architectures (a word embedding of 64, BiLSTMs of 64 units per direction; the same depth for NER):
  single_task      one three-BiLSTM tagger per task (the Δm baseline)
  low_supervision  hard sharing of the three BiLSTMs, POS read at layer 1, chunking at 2, NER at 3
                   (Søgaard & Goldberg 2016): the hierarchy without shortcuts or label embeddings
  jmt              the embedding shared, one BiLSTM per task reading [x, h_below, y_below]
                   (label embeddings of 16)
  jmt_successive   the same with successive regularisation, delta = 0.01, anchor every epoch
Equal loss weights, Adam (lr 1e-3), batch 32, 2000 steps (~4.6 epochs), 3 seeds in one program
per architecture; test metrics at the best validation step. Not run yet: no table is committed.

``jmt_successive`` needs ``mtlx.train.optimizer_of`` to pass the model to ``make_optimizer``
(``make_optimizer(steps=steps, model=model, **opt)``); without that line it trains as ``jmt``
(tests/unit/test_jmt_conll.py checks it and says so).
"""

import math

import ml_collections
import numpy as np

from mtlx.grid import dotted, experiment_config, smoke
from mtlx.tasks import Task, TaskSet

VOCAB, N_TRAIN, BATCH = 10000, 14041, 32  # conll2003_tagging's embedding rows, train sentences; batch size
DELTA, LABEL_FEATURES = 0.01, 16
POS = ("DET", "ADJ", "NOUN", "VERB", "ADP", "OTHER")
GROUP = {"DET": "NP", "ADJ": "NP", "NOUN": "NP", "VERB": "VP", "ADP": "PP", "OTHER": None}
CHUNK = ("O", "B-NP", "I-NP", "B-VP", "I-VP", "B-PP", "I-PP")
NER = ("O", "B-ENT", "I-ENT")


def blocks(vocab: int, width: int, depth: int) -> list:
    return [{"kind": "embed", "vocab_size": vocab, "features": width}] + [{"kind": "bilstm", "features": width}] * depth


def architectures(vocab: int, width: int, period: int) -> tuple:
    jmt = {"name": "jmt", "options": {"label_features": LABEL_FEATURES},
           "overrides": {"backbone.blocks": blocks(vocab, width, 1)}}  # one BiLSTM per level
    successive = {"delta": DELTA, "period": period}
    return ({"name": "single_task"},
            {"name": "hard", "label": "low_supervision", "options": {"split": -1, "head_depth": {"pos": 1, "chunk": 2}}},
            jmt,
            {**jmt, "label": "jmt_successive", "options": {**jmt["options"], "successive": successive}})


def get_config(arg=None) -> ml_collections.ConfigDict:
    if arg not in (None, "", "smoke"):
        raise ValueError(f"experiments/jmt_conll.py: unknown argument {arg!r}; use nothing or 'smoke'")
    config = experiment_config()
    config.experiment = "jmt_conll"
    config.smoke = arg == "smoke"
    run = config.run
    run.task_set.name = "conll2003_tagging"
    run.task_set.options = ml_collections.ConfigDict({
        "manual_dir": "../shared/data", "max_len": 64, "max_vocab": VOCAB, "tasks": ["pos", "chunk", "ner"]})
    run.backbone.blocks, run.backbone.head_hidden = blocks(VOCAB, 64, 3), []
    run.optimizer.name, run.optimizer.learning_rate = "adam", 1e-3
    run.update({"steps": 2000, "batch_size": BATCH, "eval_every": 500, "log_every": 100, "checkpoint_every": 1000,
                "eval_batch_size": 512})
    config.architectures = architectures(VOCAB, 64, math.ceil(N_TRAIN / BATCH))
    config.weightings = ({"name": "equal"},)
    config.seeds = (0, 1, 2)
    config.select = "best_validation"  # the table reports test metrics at the best validation step
    config.parallel.runs_per_program = 3
    config.paper = dotted({"metric_columns": [], "rows": {}, "note": (
        "Hashimoto et al. 2017 report POS and chunking on the Penn Treebank / CoNLL-2000 (WSJ), not on "
        "CoNLL-2003, and no NER; no published number is comparable, so the table holds ours only.")})
    if config.smoke:
        vocab, n_train = 40, 256
        run.task_set.name = "jmt_conll:synthetic_tagging"
        run.task_set.options = ml_collections.ConfigDict({"n_train": n_train, "vocab_size": vocab})
        run.backbone.blocks = blocks(vocab, 8, 3)
        config.architectures = architectures(vocab, 8, math.ceil(n_train / BATCH))
        smoke(config, 20)
        config.run.eval_batch_size = 64
    return config


# --------------------------------------------------------------------------- the smoke's task set


def _tags(words, base, ambiguous):
    """POS tags left to right: an ambiguous word is a NOUN after a DET or ADJ, else a VERB."""
    tags = []
    for w in words:
        prev = tags[-1] if tags else None
        tags.append((2 if prev in (0, 1) else 3) if ambiguous[w] else base[w])
    return tags


def _spans(tags, names, words):
    """Chunk tags (IOB2: maximal runs of one POS group) and entity tags (the NP chunks holding a name)."""
    groups = [GROUP[POS[t]] for t in tags]
    chunk, ner, i = [], [], 0
    while i < len(groups):
        j = i
        while j + 1 < len(groups) and groups[j + 1] == groups[i] and groups[i] is not None:
            j += 1
        g = groups[i]
        chunk += ["O"] if g is None else [f"B-{g}"] + [f"I-{g}"] * (j - i)
        entity = g == "NP" and any(names[w] for w in words[i:j + 1])
        ner += ["B-ENT"] + ["I-ENT"] * (j - i) if entity else ["O"] * (j - i + 1)
        i = j + 1
    return [CHUNK.index(c) for c in chunk], [NER.index(e) for e in ner]


def synthetic_tagging(n_train: int = 512, n_validation: int = 128, n_test: int = 128, max_len: int = 12,
                      vocab_size: int = 60, seed: int = 0) -> TaskSet:
    """Sentences of random words (ids 2..vocab_size-1; 0 pads) tagged pos -> chunk -> ner, each task a
    function of the one below and the words (see the module docstring)."""
    rng = np.random.default_rng(seed)
    base = rng.integers(0, len(POS), vocab_size)
    ambiguous = rng.random(vocab_size) < 0.2
    names = (base == POS.index("NOUN")) & (rng.random(vocab_size) < 0.3)

    def split(n):
        x = np.zeros((n, max_len), np.int32)
        ys = {k: np.full((n, max_len), -1, np.int32) for k in ("pos", "chunk", "ner")}
        for s in range(n):
            words = rng.integers(2, vocab_size, rng.integers(3, max_len + 1))
            tags = _tags(words, base, ambiguous)
            chunk, ner = _spans(tags, names, words)
            x[s, :len(words)] = words
            for k, v in (("pos", tags), ("chunk", chunk), ("ner", ner)):
                ys[k][s, :len(words)] = v
        return {"inputs": x, "targets": ys, "weights": {k: np.ones(n, np.float32) for k in ys}}

    tasks = (Task("pos", "tagging", len(POS), POS), Task("chunk", "tagging", len(CHUNK), CHUNK),
             Task("ner", "tagging", len(NER), NER))
    return TaskSet("synthetic_tagging", tasks, (max_len,), "tokens", vocab_size=vocab_size,
                   splits={"train": split(n_train), "validation": split(n_validation), "test": split(n_test)})
