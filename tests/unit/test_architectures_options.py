"""The registry and each architecture's own option checks: one line naming the
architecture, the option, its bad value and the valid choices or range."""

import dataclasses

import pytest
from test_architectures_peers import BAD_OPTIONS as PEER_BAD_OPTIONS

from fixtures_archs import TINY_LSTM, TINY_MLP, tiny_dense, tiny_tokens
from mtlx.architectures import ARCHITECTURES, BASELINE, build_model, check_heads
from mtlx.architectures.base import MTLModel
from mtlx.layers import Embed

L = len(TINY_MLP)

BAD_OPTIONS = [  # (architecture, options, words the message must contain)
    ("jmt", {"encoder": 3}, ["'jmt'", "encoder=3", "leaves no block"]),
    ("fafs", {"branches": [[0, 0, 1], [0, 1, 1], [0, 1, 2]]}, ["architecture.options.branches=", "is not a tree", "'fafs'"]),
    ("fafs", {"grow": {"rounds": 0}}, ["architecture.options.grow.rounds=0", "an int >= 1"]),
    ("single_task", {"split": 1}, ["'single_task'", "unknown option(s) ['split']", "valid options []"]),
    ("hard", {"split": 5}, ["'hard'", "split=5", f"choose 0..{L}", "-1"]),
    ("hard", {"split": -2}, ["'hard'", "split=-2", f"choose 0..{L}"]),
    ("hard", {"depth": 1}, ["'hard'", "unknown option(s) ['depth']", "['head_depth', 'split']"]),
    ("cross_stitch", {"units": "matrix"}, ["'cross_stitch'", "units='matrix'", "['scalar', 'channel', 'diagonal']"]),
    ("cross_stitch", {"stitch_after": (0, 3)}, ["'cross_stitch'", "stitch_after=[0, 3]", "[3]", f"0..{L - 1}"]),
    ("sluice", {"subspaces": 0}, ["'sluice'", "subspaces=0", ">= 1"]),
    ("sluice", {"mix_after": (-1,)}, ["'sluice'", "mix_after=[-1]", f"0..{L - 1}"]),
    ("soft_l2", {"penalty": "trace"}, ["'soft_l2'", "unknown option(s) ['penalty']", "['strength']"]),
    ("soft_trace", {"lambda": 1.0}, ["'soft_trace'", "unknown option(s) ['lambda']", "['strength']"]),
    ("mmoe", {"num_experts": 0}, ["'mmoe'", "num_experts=0", ">= 1"]),
    ("omoe", {"gates": "multi"}, ["'omoe'", "unknown option(s) ['gates']", "['num_experts']"]),
    ("tensor_factorised", {"method": "svd"}, ["tensor_factorised", "method='svd'", "['laf', 'tucker', 'tt']"]),
] + PEER_BAD_OPTIONS  # mtan, cgc, ple, dselect_k, ltb (tests/unit/test_architectures_peers.py)


def test_registry_holds_classes_with_their_attributes():
    assert BASELINE in ARCHITECTURES
    assert set(ARCHITECTURES) == {"single_task", "hard", "cross_stitch", "sluice", "soft_l2", "soft_trace", "mmoe",
                                  "omoe", "tensor_factorised", "mtan", "cgc", "ple", "dselect_k", "ltb", "jmt", "fafs"}
    base = {f.name for f in dataclasses.fields(MTLModel)} | {"parent", "name"}
    for name, cls in ARCHITECTURES.items():
        assert isinstance(cls, type) and issubclass(cls, MTLModel), name
        assert cls.options == tuple(sorted({f.name for f in dataclasses.fields(cls)} - base)), name
        assert isinstance(cls.has_shared_representation, bool) and cls.task_specific_prefixes, name
    assert {n for n, c in ARCHITECTURES.items() if c.has_shared_representation} == {"hard", "fafs", "mmoe", "omoe", "cgc",
                                                                                   "dselect_k"}
    assert ARCHITECTURES["mmoe"].gates != ARCHITECTURES["omoe"].gates  # the fixed fields, not options
    assert ARCHITECTURES["soft_l2"].penalty == "l2" and ARCHITECTURES["soft_trace"].penalty == "trace"


@pytest.mark.parametrize("name", sorted(ARCHITECTURES))
def test_every_architecture_refuses_bad_options_in_one_line(name):
    cases = [c for c in BAD_OPTIONS if c[0] == name]
    assert cases, f"no bad-option case for {name}"
    ts = tiny_dense()
    for _, options, words in cases:
        with pytest.raises(ValueError) as err:
            build_model(name, ts, TINY_MLP, **options)
        msg = str(err.value)
        assert "\n" not in msg
        for word in words:
            assert word in msg, (word, msg)
    build_model(name, ts, TINY_MLP)  # the defaults are valid


def test_unknown_architecture_lists_the_valid_ones():
    with pytest.raises(ValueError, match=r"architecture='nope' is not valid; choose one of \['cgc', 'cross_stitch'"):
        build_model("nope", tiny_dense(), TINY_MLP)


def test_head_mismatch_and_backbone_mismatch():
    ts, other = tiny_dense(), tiny_tokens()
    model = build_model("hard", ts, TINY_MLP)
    check_heads(model, ts)
    with pytest.raises(ValueError, match=r"model heads .* do not match task set 'tiny_tokens'"):
        check_heads(model, other)
    with pytest.raises(ValueError, match="needs an 'embed' first block"):
        build_model("hard", other, TINY_MLP)
    with pytest.raises(ValueError, match="backbone.blocks is empty"):
        build_model("hard", ts, ())


def test_an_embedding_smaller_than_the_vocabulary_is_refused():
    """Token ids beyond the embedding's rows would be clamped by jnp.take, silently."""
    ts = tiny_tokens()  # vocab_size 12
    small = (Embed(11, 4),) + TINY_LSTM[1:]
    with pytest.raises(ValueError, match=r"backbone.blocks\[0\].vocab_size=11 is smaller than .*vocab_size=12"):
        build_model("hard", ts, small)
    build_model("hard", ts, (Embed(12, 4),) + TINY_LSTM[1:])  # exactly the vocabulary: fine
