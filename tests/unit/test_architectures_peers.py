"""The peer libraries' architectures (mtan, cgc, ple, dselect_k, ltb) against their papers'
definitions, computed here independently: MTAN with all-ones attention is hard sharing (Liu et
al. 2019, Eq. 1-2), CGC without task experts is MMoE over the same shared experts and PLE's two
levels by hand (Tang et al. 2020, Eq. 1-5), DSelect-k's gate by its formula, on the simplex, and
one-hot once saturated with k = 1 (Hazimeh et al. 2021, Eq. 3-5), LTB with saturated branching
is the hard tree it names (Guo et al. 2020). Each compiles once in the jitted train step with a
loss weighting and a gradient weighting and runs under vmap over seeds."""

import functools

import jax
import numpy as np
import pytest

from fixtures_archs import HEAD_HIDDEN, TINY_BACKBONES, TINY_MLP, batch, task_set, tiny_dense
from fixtures_train import jit, stack
from mtlx import taps
from mtlx.architectures import build_model
from mtlx.architectures.dselect_k import DSelectGate
from mtlx.architectures.ltb import branch_probabilities
from mtlx.layers import Dense
from mtlx.optim import make_optimizer
from mtlx.train import init_state, make_train_step
from mtlx.weighting import get_weighting

PEERS = ("mtan", "cgc", "ple", "dselect_k", "ltb")
KEY = jax.random.key(0, impl="rbg")


def close(a, b, atol=1e-5):
    jax.tree_util.tree_map(lambda x, y: np.testing.assert_allclose(np.asarray(x), np.asarray(y), atol=atol,
                                                                   rtol=1e-5), a, b)


def init(model, x, seed=0):
    """Parameters of ``model``'s shapes drawn here (nothing in these tests depends on the initialisers;
    ``model.init`` would cost a compile or many eager dispatches per model)."""
    rng = np.random.default_rng(seed)
    shapes = jax.eval_shape(model.init, jax.random.PRNGKey(0), x)["params"]
    return dict(jax.tree_util.tree_map(lambda s: (0.5 * rng.standard_normal(s.shape)).astype(s.dtype), shapes))


class Drawn:
    """A stand-in model for ``init_state`` whose ``init`` returns parameters drawn by :func:`init`."""

    def __init__(self, model, x, seed):
        self.params = init(model, x, seed)

    def init(self, key, x):
        return {"params": self.params}


def predict(model, params, x):
    return jax.device_get(model.apply({"params": params}, x))


def dense(x, p, act):
    y = x.reshape(x.shape[0], -1) @ p["kernel"] + p["bias"]
    return np.maximum(y, 0) if act == "relu" else y


def heads_by_hand(params, hs, ts):
    """Task t's output layer (``head_hidden=()``) on its own features hs[t], sliced to its width."""
    out = params["task_head_out"]
    return {t.name: dense(hs[i], {k: v[i] for k, v in out.items()}, "none")[:, :t.num_outputs]
            for i, t in enumerate(ts.tasks)}


def softmax(z):
    e = np.exp(z - z.max(-1, keepdims=True))
    return e / e.sum(-1, keepdims=True)


BAD_OPTIONS = [  # (architecture, options, words the one-line message must contain)
    ("mtan", {"heads": 2}, ["'mtan'", "unknown option(s) ['heads']", "valid options []"]),
    ("cgc", {"task_experts": -1}, ["architecture.options.task_experts=-1", ">= 0", "'cgc'"]),
    ("cgc", {"shared_experts": 0, "task_experts": 0}, ["task_experts=0", "no expert", "shared_experts"]),
    ("cgc", {"levels": 2}, ["'cgc'", "unknown option(s) ['levels']"]),
    ("ple", {"levels": 4}, ["architecture.options.levels=4", "choose 1..3", "'ple'"]),
    ("dselect_k", {"k": 5}, ["architecture.options.k=5", "[1, num_experts=4]", "'dselect_k'"]),
    ("dselect_k", {"gamma": 0.0}, ["architecture.options.gamma=0.0", "> 0"]),
    ("dselect_k", {"entropy": -1.0}, ["architecture.options.entropy=-1.0", ">= 0"]),
    ("ltb", {"nodes": (1, 2)}, ["architecture.options.nodes=[1, 2]", "3 ints >= 1", "'ltb'"]),
    ("ltb", {"temperature": 0}, ["architecture.options.temperature=0", "> 0"]),
    ("ltb", {"hard": 1}, ["architecture.options.hard=1", "a bool"]),
]


@pytest.mark.parametrize("name", PEERS)
def test_bad_options_are_refused_in_one_line(name):
    ts = tiny_dense()
    for _, options, words in [c for c in BAD_OPTIONS if c[0] == name]:
        with pytest.raises(ValueError) as err:
            build_model(name, ts, TINY_MLP, **options)
        assert "\n" not in str(err.value) and all(w in str(err.value) for w in words), (words, str(err.value))
    build_model(name, ts, TINY_MLP)  # the defaults are valid


# --------------------------------------------------------------------------- MTAN


@pytest.mark.parametrize("backbone", ["mlp", "cnn"])  # every backbone runs in test_architectures_limits.py
def test_mtan_with_all_ones_attention_is_hard_sharing(backbone):
    """Every mask a = sigmoid(h(.)) = 1 (h's kernel 0, bias 50: exactly 1 in float32): hat a^(j) = p^(j),
    so every head reads the shared network's output, as hard sharing of every block does."""
    ts, blocks = task_set(backbone), TINY_BACKBONES[backbone][0]
    x = batch(backbone)["inputs"]
    mtan, hard = (build_model(n, ts, blocks, head_hidden=HEAD_HIDDEN) for n in ("mtan", "hard"))
    p_hard, p_mtan = init(hard, x), init(mtan, x, 1)
    random_masks = predict(mtan, {**p_mtan, **p_hard}, x)
    ones = {f"task_attention_{j}_h": {"kernel": np.zeros_like(p_mtan[f"task_attention_{j}_h"]["kernel"]),
                                      "bias": np.full_like(p_mtan[f"task_attention_{j}_h"]["bias"], 50.0)}
            for j in range(len(blocks))}
    expected = predict(hard, p_hard, x)[0]
    close(predict(mtan, {**p_mtan, **p_hard, **ones}, x)[0], expected)
    assert any(np.abs(random_masks[0][k] - expected[k]).max() > 1e-3 for k in expected)  # the masks matter


# --------------------------------------------------------------------------- CGC and PLE


@pytest.mark.parametrize("backbone", ["mlp", "bilstm"])  # vectors and per-token gates
def test_cgc_without_task_experts_is_mmoe(backbone):
    """CGC's gate over the shared experts only (m_t = 0) is MMoE's task gate (Ma et al. 2018, Eq. 5-6):
    MMoE's gate kernel (D, T*E) is CGC's per-task kernels (T, D, E) side by side."""
    ts, blocks = task_set(backbone), TINY_BACKBONES[backbone][0]
    x, T, E = batch(backbone)["inputs"], ts.num_tasks, 2
    mmoe = build_model("mmoe", ts, blocks, head_hidden=HEAD_HIDDEN, num_experts=E)
    cgc = build_model("cgc", ts, blocks, head_hidden=HEAD_HIDDEN, shared_experts=E, task_experts=0)
    p = init(mmoe, x)
    gate = p.pop("gate")
    mapped = {k.replace("expert_", "expert_shared_0_"): v for k, v in p.items()}
    mapped["task_gate_0"] = {"kernel": gate["kernel"].reshape(-1, T, E).transpose(1, 0, 2),
                             "bias": gate["bias"].reshape(T, E)}
    assert sorted(mapped) == sorted(init(cgc, x))
    close(predict(cgc, mapped, x)[0], predict(mmoe, {**p, "gate": gate}, x)[0])


def test_ple_two_levels_by_hand():
    """PLE (Tang et al. 2020, Eq. 4-5) on a 3-block MLP cut into levels [0, 1] and [2], 2 shared experts
    and 1 per task: task gates mix the shared experts and their own, the level-0 shared gate mixes
    all five, level 1's experts read level 0's task / shared outputs."""
    ts = tiny_dense()
    x, T, S = ts.splits["train"]["inputs"], ts.num_tasks, 2
    model = build_model("ple", ts, TINY_MLP, levels=2, shared_experts=S, task_experts=1)
    p = init(model, x)
    at = lambda name, i: {k: v[i] for k, v in p[name].items()}  # noqa: E731  (copy i of a stacked block)

    def expert(name, level, ids, i, h):
        for b in ids:
            h = dense(h, at(f"{name}_{level}_{b}", i), "relu")
        return h

    shared = [expert("expert_shared", 0, (0, 1), s, x) for s in range(S)]
    own = [expert("task_experts", 0, (0, 1), t, x) for t in range(T)]
    task0 = [sum(g * e for g, e in zip(softmax(dense(x, at("task_gate_0", t), "none")).T[..., None],
                                       shared + [own[t]])) for t in range(T)]
    g = softmax(dense(x, p["shared_gate_0"], "none")).T[..., None]
    shared0 = sum(gi * e for gi, e in zip(g, shared + own))
    shared = [expert("expert_shared", 1, (2,), s, shared0) for s in range(S)]
    own = [expert("task_experts", 1, (2,), t, task0[t]) for t in range(T)]
    task1 = [sum(g * e for g, e in zip(softmax(dense(task0[t], at("task_gate_1", t), "none")).T[..., None],
                                       shared + [own[t]])) for t in range(T)]
    out = predict(model, p, x)[0]
    close(out, heads_by_hand(p, task1, ts))


# --------------------------------------------------------------------------- DSelect-k


def smooth_step(t, gamma):
    """Hazimeh et al. 2021, Eq. 3, piece by piece."""
    if t <= -gamma / 2:
        return 0.0
    if t >= gamma / 2:
        return 1.0
    return -2 / gamma ** 3 * t ** 3 + 3 / (2 * gamma) * t + 0.5


def dselect_weights(z, alpha, n, gamma):
    """q = sum_i softmax(alpha)_i r(z_i) (Eq. 5), r(z_i)_j = prod_l S(z_il)^b_l(j) (1 - S(z_il))^(1 - b_l(j))
    (Eq. 4) over the 2^m codes, code j >= n counted for expert j - n. z (k, m), alpha (k,)."""
    k, m = z.shape
    q = np.zeros(n)
    for i, a in enumerate(softmax(alpha)):
        for j in range(2 ** m):
            r = np.prod([smooth_step(z[i, l], gamma) if (j >> l) & 1 else 1 - smooth_step(z[i, l], gamma)
                         for l in range(m)])
            q[j % n] += a * r
    return q


@pytest.mark.parametrize("n,k", [(4, 2), (3, 2), (5, 3)])
def test_dselect_gate_is_its_formula_and_on_the_simplex(n, k):
    T, gamma, m = 2, 1.0, int(np.ceil(np.log2(n)))
    gate = DSelectGate(T, n, k, gamma)
    x = np.random.default_rng(n).standard_normal((6, 3)).astype(np.float32)
    p = jax.tree_util.tree_map(lambda s: np.random.default_rng(k).standard_normal(s.shape).astype(np.float32),
                               jax.eval_shape(gate.init, KEY, x)["params"])  # some logits beyond +-gamma/2
    q = np.asarray(gate.apply({"params": p}, x)[0])
    z = (x @ p["selector"]["kernel"] + p["selector"]["bias"]).reshape(6, T, k, m)
    alpha = (x @ p["weights"]["kernel"] + p["weights"]["bias"]).reshape(6, T, k)
    expected = np.array([[dselect_weights(z[b, t], alpha[b, t], n, gamma) for t in range(T)] for b in range(6)])
    np.testing.assert_allclose(q, expected, atol=1e-5)
    assert np.all(q >= 0)
    np.testing.assert_allclose(q.sum(-1), 1.0, atol=1e-6)


def test_dselect_k1_saturated_selects_exactly_one_expert_as_mmoe_with_it_alone():
    """k = 1, selector logits at +-gamma (beyond gamma/2, kernel 0): S is exactly 0 or 1, so the weights
    are exactly one-hot on the expert whose binary code the signs spell, and the model is MMoE with that
    one expert (a softmax over one expert is exactly 1)."""
    ts = tiny_dense()
    x, T, n, chosen = ts.splits["train"]["inputs"], ts.num_tasks, 4, 2
    model = build_model("dselect_k", ts, TINY_MLP, num_experts=n, k=1, head_hidden=HEAD_HIDDEN)
    p = init(model, x)
    bits = np.array([1.0 if (chosen >> l) & 1 else -1.0 for l in range(2)], np.float32)
    p["gate"]["selector"] = {"kernel": np.zeros_like(p["gate"]["selector"]["kernel"]),
                             "bias": np.tile(bits, T)}  # (T * k * m,): every task's one selector
    q, _ = DSelectGate(T, n, 1, 1.0).apply({"params": p["gate"]}, x)
    np.testing.assert_array_equal(np.asarray(q), np.broadcast_to(np.eye(n)[chosen], q.shape))
    one = build_model("mmoe", ts, TINY_MLP, num_experts=1, head_hidden=HEAD_HIDDEN)
    p_one = dict(init(one, x))
    p_one.update({k: {w: v[chosen:chosen + 1] for w, v in p[k].items()} for k in p if k.startswith("expert_")})
    p_one.update({k: p[k] for k in p if k.startswith("task_")})
    close(predict(model, p, x)[0], predict(one, p_one, x)[0])


def test_dselect_entropy_penalty_is_the_selectors_entropy():
    """aux["entropy"] = lambda * mean_b sum_(t, i) H(r(z_i)) over the 2^m codes (Sec. 3.3)."""
    ts, lam = tiny_dense(), 0.3
    x, T = ts.splits["train"]["inputs"], ts.num_tasks
    model = build_model("dselect_k", ts, TINY_MLP, num_experts=4, k=2, entropy=lam)
    p = init(model, x)
    z = (x @ p["gate"]["selector"]["kernel"] + p["gate"]["selector"]["bias"]).reshape(len(x), T, 2, 2)
    h = 0.0
    for b, t, i in np.ndindex(len(x), T, 2):
        r = np.array([dselect_weights(z[b, t, i:i + 1], np.zeros(1), 4, 1.0)[j] for j in range(4)])
        h -= np.sum(r[r > 0] * np.log(r[r > 0]))
    np.testing.assert_allclose(predict(model, p, x)[1]["entropy"], lam * h / len(x), rtol=1e-4)


# --------------------------------------------------------------------------- learning to branch


def test_ltb_branching_probabilities_lie_on_the_simplex():
    logits = np.random.default_rng(0).standard_normal((4, 3)).astype(np.float32) * 5
    for temperature in (0.1, 1.0, 10.0):
        d = np.asarray(branch_probabilities(logits, temperature))
        assert np.all(d >= 0)
        np.testing.assert_allclose(d.sum(-1), 1.0, atol=1e-6)
    hard = np.asarray(branch_probabilities(logits, 1.0, hard=True))
    np.testing.assert_array_equal(hard, np.eye(3)[logits.argmax(-1)])
    noise = np.random.default_rng(1).gumbel(size=logits.shape).astype(np.float32)
    sample = np.asarray(branch_probabilities(logits, 0.5, noise=noise))
    np.testing.assert_allclose(sample, softmax((logits + noise) / 0.5), rtol=1e-5)  # Jang et al. 2017, Eq. 1
    np.testing.assert_allclose(sample.sum(-1), 1.0, atol=1e-6)


def test_ltb_draws_gumbel_noise_only_when_given_the_stream():
    ts = tiny_dense()
    x = ts.splits["train"]["inputs"]
    model = build_model("ltb", ts, TINY_MLP)
    p = init(model, x)
    plain = predict(model, p, x)[0]
    close(predict(model, p, x)[0], plain, atol=0)  # deterministic without the stream
    drawn = [model.apply({"params": p}, x, rngs={taps.GUMBEL_RNG: jax.random.PRNGKey(s)})[0] for s in (0, 1)]
    assert all(np.abs(np.asarray(drawn[0][k]) - np.asarray(drawn[1][k])).max() > 1e-4 for k in plain)


@functools.lru_cache(maxsize=None)
def ltb_tree():
    """An LTB with nodes (1, 2, 2) and the tree it names: block 1's two nodes read block 0's one node;
    block 2's node 0 reads block 1's node 1 and node 1 reads node 0; tasks 0, 1 read node 1, task 2 node 0."""
    ts = tiny_dense()
    x = ts.splits["train"]["inputs"]
    model = build_model("ltb", ts, TINY_MLP, nodes=(1, 2, 2))
    parents = {taps.mixing_name("branch", 2): [1, 0], taps.mixing_name("branch", "heads"): [1, 1, 0]}
    return ts, x, model, init(model, x), parents


@pytest.mark.parametrize("how", ["saturated", "hard"])
def test_ltb_with_one_hot_branching_is_the_hard_tree(how):
    """Logits +-1e4 (softmax exactly one-hot), or ``hard=True`` (the argmax parent) with logits that only
    lean that way, give the hard-shared tree they name, computed here block by block."""
    ts, x, model, p, parents = ltb_tree()
    scale = 1e4 if how == "saturated" else 0.3
    p = {**p, **{k: np.where(np.eye(2)[v] > 0, scale, -scale).astype(np.float32) for k, v in parents.items()}}
    if how == "hard":
        model = model.clone(hard=True)
    node = lambda l, i, h: dense(h, {k: v[i] for k, v in p[f"node_{l}"].items()}, "relu")  # noqa: E731
    h0 = node(0, 0, x)
    h1 = [node(1, c, h0) for c in range(2)]
    h2 = [node(2, c, h1[par]) for c, par in enumerate(parents[taps.mixing_name("branch", 2)])]
    close(predict(model, p, x)[0], heads_by_hand(p, [h2[par] for par in parents[taps.mixing_name("branch", "heads")]], ts))


def test_ltb_with_one_node_per_block_is_hard_sharing():
    ts = tiny_dense()
    x = ts.splits["train"]["inputs"]
    ltb, hard = build_model("ltb", ts, TINY_MLP, nodes=(1, 1, 1)), build_model("hard", ts, TINY_MLP)
    p = init(ltb, x)
    assert not any(taps.is_mixing(k) for k in p)  # one parent everywhere: nothing to choose
    p_hard = {**p, **{f"shared_{l}": {k: v[0] for k, v in p[f"node_{l}"].items()} for l in range(3)}}
    for l in range(3):
        del p_hard[f"node_{l}"]
    close(predict(ltb, p, x)[0], predict(hard, p_hard, x)[0])


# --------------------------------------------------------------------------- the one train step


@pytest.mark.parametrize("arch", PEERS)
def test_compiles_once_in_the_train_step_and_runs_under_vmap_over_seeds(arch):
    """Equal weighting (one backward) and IMTL (the per-task gradients' Gram matrix) in one jitted program,
    vmapped over two seeds' states: called twice it compiles once, and the seeds stay apart.
    (That a vmapped step equals separate runs, and that every path's update is the per-task
    gradients' combination, test_train_step.py and test_grads.py check for every architecture.)"""
    ts = tiny_dense()
    data = ts.splits["train"]
    model = build_model(arch, ts, (Dense(4), Dense(3)))
    tx = make_optimizer("adam", 1e-2)
    ws = {n: get_weighting(n) for n in ("equal", "imtl")}
    steps = {n: jax.vmap(make_train_step(model, ts.tasks, w, tx), in_axes=(0, None)) for n, w in ws.items()}
    states = {n: stack([init_state(Drawn(model, data["inputs"], s), w, tx, 3, data["inputs"], s) for s in (0, 1)])
              for n, w in ws.items()}
    program = jit(lambda states, batch: {n: steps[n](states[n], batch) for n in steps})
    first = program(states, data)
    out = program({n: s for n, (s, _) in first.items()}, data)
    assert program._cache_size() == 1
    for n, (st, metrics) in out.items():
        losses = np.asarray(metrics["losses"])
        assert losses.shape == (2, 3) and np.all(np.isfinite(losses)), (arch, n)
        assert not np.allclose(losses[0], losses[1]), (arch, n)  # two seeds, two models
        assert np.all(np.asarray(st.step) == 2)
