"""CoNLL-2003 English as three tagging tasks: ``pos``, ``chunk``, ``ner``
(as in the hard/soft-sharing tagging papers, e.g. Søgaard & Goldberg 2016;
Ruder et al. 2019, sluice networks; data: Tjong Kim Sang & De Meulder 2003).

Files: eng.train / eng.testa / eng.testb (train / validation / test), one token
a line ``word POS chunk NER`` (chunk and NER in IOB1), a blank line between
sentences; ``-DOCSTART-`` lines are skipped. The files named train.txt /
valid.txt / test.txt (the layout of the online zip, which TFDS's own
``conll2003`` builder also downloads) are accepted too; the online copy's tags
may use IOB2 instead of IOB1, which the info's ``source`` lets a table state.

Stored per sentence (no padding, no truncation; the task set does those):
  words         word ids: lower-cased, digits -> '0'; vocabulary of the
                training split ranked by count (then alphabetically), id 0 =
                padding, 1 = out of vocabulary, so a minimum count is an id cut-off.
  chars, word_lengths  character ids of all tokens, concatenated (0 = padding,
                1 = unknown; vocabulary of the training split's raw characters)
  pos, chunk, ner  label ids; label vocabularies are the training split's
                sorted labels. CoNLL-2003's tag sets are closed, so a label
                seen only in validation/test means a mismatched file: the build
                stops with a CorruptSourceError naming it.
The vocabularies and counts are in ``info.metadata``.
"""

from __future__ import annotations

import collections
import re
import zipfile

import numpy as np
import tensorflow_datasets as tfds

from mtlx.data.tfds_builders import common

URL = "https://data.deepai.org/conll2003.zip"
FILES = {"train": "eng.train", "validation": "eng.testa", "test": "eng.testb"}
ZIP_FILES = {"train": "train.txt", "validation": "valid.txt", "test": "test.txt"}
TASKS = ("pos", "chunk", "ner")
PAD, UNK = 0, 1
SPECIALS = ("<pad>", "<unk>")


def normalise(word: str) -> str:
    return re.sub(r"\d", "0", word.lower())


def parse(lines, name: str = "<conll>") -> list[dict[str, list[str]]]:
    """Sentences as ``{'tokens': [...], 'pos': [...], 'chunk': [...], 'ner': [...]}``."""
    sentences, current = [], {k: [] for k in ("tokens", *TASKS)}
    for n, line in enumerate([*lines, ""], 1):
        fields = line.split()
        if fields and fields[0] == "-DOCSTART-":
            fields = []
        if not fields:
            if current["tokens"]:
                sentences.append(current)
                current = {k: [] for k in current}
            continue
        if len(fields) != 4:
            raise common.CorruptSourceError(f"{name}, line {n}: expected 4 columns (word POS chunk NER), got {len(fields)}")
        for key, value in zip(("tokens", *TASKS), fields):
            current[key].append(value)
    return sentences


def ranked_vocab(counts: collections.Counter) -> list[str]:
    """Specials then items by count (descending), ties alphabetically."""
    return [*SPECIALS, *sorted(counts, key=lambda w: (-counts[w], w))]


def build_vocabs(train: list[dict]) -> dict:
    words = collections.Counter(normalise(t) for s in train for t in s["tokens"])
    chars = collections.Counter(ch for s in train for t in s["tokens"] for ch in t)
    word_vocab = ranked_vocab(words)
    return {
        "words": word_vocab,
        "word_counts": [0, 0] + [words[w] for w in word_vocab[2:]],
        "chars": ranked_vocab(chars),
        "labels": {t: sorted({x for s in train for x in s[t]}) for t in TASKS},
    }


def encode(sentence: dict, vocabs: dict, lookups: dict, name: str) -> dict:
    tokens = sentence["tokens"]
    out = {
        "words": np.array([lookups["words"].get(normalise(t), UNK) for t in tokens], np.int32),
        "chars": np.array([lookups["chars"].get(ch, UNK) for t in tokens for ch in t], np.int32),
        "word_lengths": np.array([len(t) for t in tokens], np.int32),
        "text": " ".join(tokens),
    }
    for task in TASKS:
        try:
            out[task] = np.array([lookups[task][x] for x in sentence[task]], np.int32)
        except KeyError as e:
            raise common.CorruptSourceError(
                f"{name}: {task} label {e.args[0]!r} does not occur in the training file (known: {vocabs['labels'][task]})"
            ) from None
    return out


class Conll2003Tagging(common.Builder):
    """CoNLL-2003 sentences with word/char ids and POS/chunk/NER ids (see module docstring)."""

    HOMEPAGE = "https://www.clips.uantwerpen.be/conll2003/ner/"
    CITATION = "Tjong Kim Sang & De Meulder, Introduction to the CoNLL-2003 Shared Task, CoNLL 2003."
    BUILDER_CONFIGS = []

    def _info(self):
        ids = common.vector_feature(np.int32)
        return self.make_info(
            {"words": ids, "chars": ids, "word_lengths": ids, "text": tfds.features.Text(), **{t: ids for t in TASKS}},
            description=__doc__,
        )

    def _source_lines(self, dl_manager) -> tuple[dict[str, list[str]], dict[str, str]]:
        """``({split: lines}, {split: file name})`` from the local files or the online zip."""
        if self.source_dir is None:
            z = zipfile.ZipFile(dl_manager.download(URL))
            members = {m.rsplit("/", 1)[-1]: m for m in z.namelist()}
            lines = {s: z.read(members[f]).decode("utf-8").splitlines() for s, f in ZIP_FILES.items()}
            return lines, {s: f"{URL}:{f}" for s, f in ZIP_FILES.items()}
        origin = f"{URL} (as {', '.join(ZIP_FILES.values())}) or the CoNLL-2003 shared task, {self.HOMEPAGE}"
        paths = {}
        for split, name in FILES.items():
            for candidate in (name, ZIP_FILES[split]):
                if (self.source_dir / candidate).is_file():
                    paths[split] = self.source_dir / candidate
                    break
            else:
                raise common.missing_file_error(self.name, name, self.source_dir, list(FILES.values()), origin)
        return {s: common.read_text_lines(p) for s, p in paths.items()}, {s: str(p) for s, p in paths.items()}

    def _split_generators(self, dl_manager):
        lines, names = self._source_lines(dl_manager)
        sentences = {s: parse(lines[s], names[s]) for s in FILES}
        vocabs = build_vocabs(sentences["train"])
        self.info.metadata.update(
            vocabs,
            source=", ".join(names.values()),
            splits="train = eng.train, validation = eng.testa, test = eng.testb",
            sentence_lengths={s: [len(x["tokens"]) for x in v] for s, v in sentences.items()},
        )
        return {s: self._generate_examples(sentences[s], vocabs, names[s]) for s in FILES}

    def _generate_examples(self, sentences, vocabs, name):
        lookups = {"words": {w: i for i, w in enumerate(vocabs["words"]) if i >= 2}, "chars": {c: i for i, c in enumerate(vocabs["chars"]) if i >= 2}}
        lookups.update({t: {x: i for i, x in enumerate(vocabs["labels"][t])} for t in TASKS})
        for i, sentence in enumerate(sentences):
            yield i, encode(sentence, vocabs, lookups, name)
