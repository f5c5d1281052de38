r"""Sluice networks and low supervision on CoNLL-2003: POS, chunking and NER with a BiLSTM tagger.

  python -m launch.run --config experiments/sluice_conll.py            # the three tasks together
  python -m launch.run --config experiments/sluice_conll.py:pairs      # main task + one auxiliary task
  python -m launch.table results/sluice_conll         # (and results/sluice_conll_pairs)
  python -m launch.plot results/sluice_conll

The data are read from ``../shared/data/conll2003`` (eng.train / eng.testa /
eng.testb; ``task_set.options.manual_dir``) the first time, then from TFDS's
data directory.

Papers. Ruder et al. 2019 ("Latent multi-task architecture learning", AAAI;
sluice networks) compare single-task models, hard sharing, low supervision,
cross-stitch networks and sluice networks on OntoNotes 5.0 tagging tasks (POS,
chunking, NER, SRL), with one main task and auxiliary tasks. Søgaard &
Goldberg 2016 ("Deep multi-task learning with low level tasks supervised at
lower layers", ACL) propose low supervision: each task's output reads its own
layer of a stacked BiLSTM, the low-level task (POS) a low layer. Yang &
Hospedales 2017 (DMTRL) factorise the task-stacked kernels (tensor_factorised).

Ours. CoNLL-2003 English (Tjong Kim Sang & De Meulder 2003; eng.train /
eng.testa / eng.testb = train / validation / test: 14041 / 3250 / 3453
sentences), which carries POS, chunk and NER tags on the same sentences
(``conll2003_tagging``; chunk and NER in IOB1 as the files have them). Words are
lower-cased, digits -> 0, the 9998 most frequent training words kept
(``max_vocab``), sentences cut at 64 tokens (7 validation and 7 test sentences
are longer; their tail tokens are not scored). No character model, no
pre-trained embeddings, no CRF: a word embedding (64) and three BiLSTM layers
(64 units per direction), a softmax per token per task.

Architectures, all over that backbone (blocks: 0 embed, 1-3 BiLSTM):
  single_task        one tagger per task (the Δm baseline)
  hard               embedding and all three BiLSTM layers shared, every head on the top layer
  low_supervision    hard sharing with ``head_depth``: POS reads layer 1, chunking layer 2,
                     NER layer 3 (Søgaard & Goldberg 2016); the pairs put POS on layer 1 and
                     the main task on top
  cross_stitch       scalar cross-stitch units after blocks 0-2 (Misra et al. 2016)
  sluice             2 subspaces per layer, alpha after every block, beta over the three BiLSTM
                     layers' outputs, orthogonality penalty 0.01 (Ruder et al. 2019); the
                     ``mixing_sluice`` and ``mixing_cross_stitch`` figures draw the learned
                     alpha/beta (and cross-stitch) weights as heatmaps
  tensor_factorised  Tucker factorisation of every block's task-stacked kernels: the embedding
                     at rank (64, 64, T), the LSTM kernels (input + recurrent rows x 4 gates, per
                     direction) at rank <= 32 per mode
Equal loss weights, Adam (lr 1e-3), batch 32, 2000 steps (~4.6 epochs), 3 seeds
(run in one program each: ``parallel.runs_per_program``); the test metrics
are taken at the step of the best validation score (mean of the tasks' main
metrics).

Metrics: POS token accuracy; chunk and NER span F1 as conlleval computes it
(``mtlx.losses.span_f1``: seqeval in its default, conlleval-compatible mode;
tests/unit/test_span_f1.py checks it against hand-worked conlleval cases in
IOB1 and IOB2). Δm% (Maninis et al. 2019) over the tasks' main metrics against
single_task.

``:pairs`` is Ruder et al.'s other setting, one main task with one auxiliary
task, here chunking + POS and NER + POS (``task_set.options.tasks``: main task
first). POS is marked auxiliary there (``task_set.options.auxiliary``): it is
trained as before, but the table's Δm and significance marks, and the
best-validation step, cover the main task only (POS is listed apart), so Δm is
the main task's relative change against single_task.

Published numbers: sluice's own are on OntoNotes 5.0 (not obtainable here),
and we found no CoNLL-2003 multi-task POS/chunk/NER table whose numbers we
could read and check from here; ``config.paper`` therefore holds no rows, and
its note names the closest setups (different protocols: char models, CRFs,
pre-trained embeddings).

Time (measured on this 2-core machine while other jobs loaded it, ``nice -n
10``; CPU seconds, which the load inflates less than wall time). One train
step of one seed (batch 32, 64 tokens): single_task 238 ms, hard 80 ms,
low_supervision 82 ms, cross_stitch 267 ms, sluice 317 ms, tensor_factorised
294 ms; one evaluation of the validation split 3-7 s (the test split about
the same); compilation about 5 s. So a 2000-step run with 4 evaluations takes
about 190 s (hard) to 690 s (sluice) of CPU, the 18 runs of the default grid
about 2.4 CPU-hours (about 1.2 h wall on two idle cores with --parallel=2)
and ``:pairs`` (36 runs, two tasks each) about 3 more (measured: the
committed :pairs sweep took 1 h 50 min wall with two launchers sharing it,
2,000 steps per program of 3 seeds: 6.6 min for hard, 13 min cross-stitch,
21-23 min single_task and sluice). A real run measured
end to end: ``--only sluice --config.run.steps=200 --config.run.eval_every=100``
(3 seeds in one program, 2 evaluations) took 244 s of CPU, 622 s wall under
a load average of 13 on the 2 cores (0.54 program steps/s).

  python -m launch.run --config experiments/sluice_conll.py:smoke --workdir /tmp/conll_smoke

is every architecture on the first 64 sentences of each split, one seed, 20
steps, to check the wiring (measured under the same load: 20-40 s wall per
run, mostly compilation; 75 s of CPU for all six); ``:pairs_smoke`` the same
for the pairs (12 runs, 107 s of CPU).
"""

import ml_collections

from mtlx.grid import dotted, experiment_config, smoke

VOCAB = 10000  # embedding rows = task_set.options.max_vocab (ids 0 pad, 1 OOV, then the 9998 most frequent words)
WIDTH = 64  # BiLSTM units per direction (outputs 2 x 64)
BLOCKS = [{"kind": "embed", "vocab_size": VOCAB, "features": 64}] + [{"kind": "bilstm", "features": WIDTH}] * 3
LOW = {"pos": 1, "chunk": 2}  # Søgaard & Goldberg's low supervision; NER (and a pair's main task) on the top, 3
PAIRS = [["chunk", "pos"], ["ner", "pos"]]  # main task first, POS as the auxiliary task


def tucker_rank(num_tasks: int) -> list:
    """Per block: the embedding (vocab x 64 x T) at rank (64, 64, T), each LSTM kernel's modes capped at 32."""
    return [[64, 64, num_tasks], 32, 32, 32]


ARCHITECTURES = (
    {"name": "single_task"},
    {"name": "hard", "options": {"split": -1}},
    {"name": "hard", "label": "low_supervision", "options": {"split": -1, "head_depth": LOW}},
    {"name": "cross_stitch", "options": {"units": "scalar"}},
    {"name": "sluice", "options": {"subspaces": 2, "orthogonality": 0.01}},
    {"name": "tensor_factorised", "options": {"method": "tucker", "rank": tucker_rank(3)}},
)

NOTE = (
    "No published numbers beside ours: Ruder et al. 2019 report sluice networks on OntoNotes 5.0 (not "
    "obtainable offline), and no CoNLL-2003 POS/chunk/NER multi-task table could be read and checked here. "
    "Closest setups, all different from ours (character models, CRF layers, pre-trained embeddings): "
    "Ampomah et al. 2019 (Gated Task Interaction, IJCNN; POS/chunk/NER on CoNLL-2003), Lu, Bai & Langlais "
    "2019 (SC-LSTM, NAACL; NER/chunking/POS), Changpinyo, Hu & Sha 2018 (COLING; 11 tagging tasks incl. "
    "CoNLL-2003 NER). Ours: mean +- 95% CI over 3 seeds, test metrics at the best validation step; chunk and "
    "ner are span F1 (conlleval's rules), pos token accuracy.")


def get_config(arg=None) -> ml_collections.ConfigDict:
    if arg not in (None, "", "smoke", "pairs", "pairs_smoke"):
        raise ValueError(f"experiments/sluice_conll.py: unknown argument {arg!r}; use nothing, 'smoke', 'pairs' "
                         f"or 'pairs_smoke'")
    pairs = arg in ("pairs", "pairs_smoke")
    config = experiment_config()
    config.experiment = "sluice_conll_pairs" if pairs else "sluice_conll"
    config.smoke = arg in ("smoke", "pairs_smoke")
    run = config.run
    run.task_set.name = "conll2003_tagging"
    run.task_set.options = ml_collections.ConfigDict({
        "manual_dir": "../shared/data", "max_len": 64, "max_vocab": VOCAB, "tasks": ["pos", "chunk", "ner"]})
    run.backbone.blocks = BLOCKS
    run.backbone.head_hidden = []
    run.optimizer.name = "adam"
    run.optimizer.learning_rate = 1e-3
    run.update({"steps": 2000, "batch_size": 32, "eval_every": 500, "log_every": 100, "checkpoint_every": 1000,
                "eval_batch_size": 512})
    config.architectures = ARCHITECTURES
    if pairs:  # the pair's POS on layer 1, its main task on the top; the embedding's Tucker task mode has 2 ranks
        pair_options = {"low_supervision": {"head_depth": {"pos": 1}}, "tensor_factorised": {"rank": tucker_rank(2)}}
        config.architectures = tuple({**a, "options": {**a.get("options", {}), **pair_options.get(a.get("label", a["name"]), {})}}
                                     for a in ARCHITECTURES)
        config.sweep = dotted({"task_set.options.tasks": PAIRS})
        run.task_set.options.auxiliary = ["pos"]  # the table's Δ and the best-validation step: the main task only
    config.weightings = ({"name": "equal"},)
    config.seeds = (0, 1, 2)
    config.select = "best_validation"  # the table reports test metrics at the best validation step
    config.parallel.runs_per_program = 3  # the seeds of one architecture in one compiled program
    config.paper = dotted({"metric_columns": [], "rows": {}, "note": NOTE})
    if config.smoke:
        smoke(config, 20, max_sentences=64)
        config.run.eval_batch_size = 64
    return config
