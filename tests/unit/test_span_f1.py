"""Span F1 of IOB-tagged tasks (chunking, NER) against conlleval's rules, worked by hand.

conlleval (the CoNLL-2000/2003 evaluation script) reads a chunk as a maximal run
of one type: it starts at B-X, or at I-X after O, after another type or at the
sentence's start; it ends before O, before B-, before another type and at the
sentence's end (a blank line). A predicted chunk is correct when a gold chunk has
the same type, start and end. Precision = correct / predicted chunks, recall =
correct / gold chunks, FB1 = 2PR / (P + R) (conlleval prints it in percent).
"""

import numpy as np
import pytest

import fixtures_tfds as fx
from mtlx import losses
from mtlx.data import tfds_sets
from mtlx.tasks import Task, higher_is_better

# Two sentences, IOB1 (CoNLL-2003's files). Gold chunks, by the rules above:
#   s1: ORG[0,1] (I- at the start), ORG[2,2] (B- splits two adjacent ORGs), LOC[3,3] (type change), PER[5,6]
#   s2: PER[0,0]
# Predicted chunks:
#   s1: ORG[0,2] (no B-: one chunk over both gold ORGs, which sit inside it: wrong), LOC[3,3] (right),
#       PER[5,5] (ends early: wrong), PER[7,7] (wrong)
#   s2: PER[0,0] (right: the sentence boundary ends s1's PER[7,7], so it does not run on), LOC[1,1] (wrong)
# gold 5, predicted 6, correct 2: P = 1/3, R = 2/5, F1 = 2PR/(P+R) = 4/11.
IOB1_GOLD = [["I-ORG", "I-ORG", "B-ORG", "I-LOC", "O", "I-PER", "I-PER", "O"], ["I-PER", "O"]]
IOB1_PRED = [["I-ORG", "I-ORG", "I-ORG", "I-LOC", "O", "I-PER", "O", "I-PER"], ["I-PER", "I-LOC"]]
# The same chunks written in IOB2 (every chunk starts with B-).
IOB2_GOLD = [["B-ORG", "I-ORG", "B-ORG", "B-LOC", "O", "B-PER", "I-PER", "O"], ["B-PER", "O"]]
IOB2_PRED = [["B-ORG", "I-ORG", "I-ORG", "B-LOC", "O", "B-PER", "O", "B-PER"], ["B-PER", "B-LOC"]]
HAND_F1 = 4 / 11


@pytest.mark.parametrize("gold,pred", [(IOB1_GOLD, IOB1_PRED), (IOB2_GOLD, IOB2_PRED)], ids=["IOB1", "IOB2"])
def test_span_f1_is_conllevals_on_nested_and_adjacent_chunks(gold, pred):
    assert losses.span_f1(gold, pred) == pytest.approx(HAND_F1)


def test_conlleval_reading_of_ill_formed_and_empty_sequences():
    # I-LOC right after B-PER starts a LOC chunk; I-PER after O starts a PER chunk: both as their B- forms
    assert losses.span_f1([["B-PER", "B-LOC"], ["O", "B-PER"]], [["B-PER", "I-LOC"], ["O", "I-PER"]]) == 1.0
    # one gold chunk, none predicted: P undefined, R = 0 -> conlleval prints 0
    assert losses.span_f1([["B-PER", "O"]], [["O", "O"]]) == 0.0


def _one_hot(ids, n):
    return np.eye(n, dtype=np.float32)[np.maximum(ids, 0)] * 10.0


def test_compute_metrics_reports_span_f1_over_labelled_tokens_and_weighted_rows():
    labels = ("B-LOC", "B-ORG", "B-PER", "I-LOC", "I-ORG", "I-PER", "O")
    ner = Task("ner", "tagging", len(labels), labels)
    assert ner.spans and ner.metrics == ("f1", "accuracy") and ner.main_metric == "f1"
    assert higher_is_better("tagging", "f1") is True
    ids = {x: i for i, x in enumerate(labels)}
    width = 10  # IOB1_GOLD's rows padded with -1, plus a third row that weight 0 drops

    def encode(rows):
        return np.array([[ids[x] for x in r] + [-1] * (width - len(r)) for r in rows], np.int32)

    junk = np.array([[ids["I-PER"]] * width], np.int32)
    target = np.concatenate([encode(IOB1_GOLD), junk])
    pred_ids = np.concatenate([encode(IOB1_PRED), np.full((1, width), ids["O"], np.int32)])
    pred_ids[:2][target[:2] < 0] = ids["I-ORG"]  # what the model says at padding must not matter
    m = losses.compute_metrics(ner, _one_hot(pred_ids, len(labels)), target, np.array([1, 1, 0], np.float32))
    assert m["f1"] == pytest.approx(HAND_F1)
    assert m["accuracy"] == pytest.approx(6 / 10)  # 10 labelled tokens in the two kept rows: 5 + 1 tagged right
    pos = Task("pos", "tagging", 3, ("NN", "DT", "VB"))
    assert not pos.spans and pos.metrics == ("accuracy",)
    assert "f1" not in losses.compute_metrics(pos, _one_hot(np.zeros((1, 2), np.int32), 3), np.zeros((1, 2), np.int32),
                                              np.ones(1))
    with pytest.raises(ValueError, match="labels has 2 names for 3 outputs"):
        Task("x", "tagging", 3, ("O", "B-X"))


@pytest.fixture(scope="module")
def conll_pair(tmp_path_factory):
    root = tmp_path_factory.mktemp("conll_pair")
    fx.write_conll(root / "src" / "conll2003")
    return tfds_sets.conll2003_tagging(manual_dir=str(root / "src"), data_dir=str(root / "data"),
                                       tasks=["chunk", "pos"], max_len=6)


def test_conll_tasks_option_selects_a_main_and_an_auxiliary_task(conll_pair):
    ts = conll_pair
    assert ts.task_names == ("chunk", "pos") and ts.name == "conll2003_tagging_chunk_pos"
    chunk, pos = ts.tasks
    assert chunk.labels == tuple(ts.info["labels"]["chunk"]) and chunk.spans and not pos.spans
    test = ts.splits["test"]
    assert set(test["targets"]) == set(test["weights"]) == {"chunk", "pos"}
    y = test["targets"]["chunk"]  # the gold tags score F1 = 1 against themselves
    assert losses.compute_metrics(chunk, _one_hot(y, chunk.num_outputs), y, np.ones(len(y)))["f1"] == 1.0
    with pytest.raises(ValueError, match=r"option tasks=\['ner', 'srl'\] is not valid"):
        tfds_sets.conll2003_tagging(tasks=["ner", "srl"])


def test_conll_vocabulary_cap_and_first_sentences(tmp_path):
    src = tmp_path / "src"
    fx.write_conll(src)
    ts = tfds_sets.conll2003_tagging(manual_dir=str(src), data_dir=str(tmp_path / "data"), max_vocab=4, max_sentences=2)
    assert ts.vocab_size == 4 and ts.splits["train"]["inputs"].max() == 3  # ids 2, 3: the two most frequent words
    assert [len(ts.splits[s]["inputs"]) for s in ("train", "validation", "test")] == [2, 1, 1]
    assert ts.info["truncated_sentences"]["train"] == 0  # the 8-token sentence is the third
    with pytest.raises(ValueError, match="option max_vocab=2 must be 0"):
        tfds_sets.conll2003_tagging(max_vocab=2)
