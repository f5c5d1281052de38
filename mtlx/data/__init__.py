"""Task sets: ``TASK_SETS`` maps a name to a function(**options) -> ``mtlx.tasks.TaskSet``.

``get_task_set(name, **options)`` builds one, refusing unknown names and
options with the valid choices. A run's config names it as
``task_set.name`` / ``task_set.options``.

Modules
  synthetic.py       task sets generated in code (no files).
  tfds_builders/     mtlx's TFDS builders, one module per data set: they read
                     the original files (local or downloaded) and write
                     ArrayRecord files; no TensorFlow.
  tfds_reading.py    the toolkit of a TFDS task set: build, read the splits
                     into the batch layout (or stream them), describe.
  tfds_sets.py       the TFDS task-set functions (mtlx's builders and two TFDS
                     catalog data sets).
  pipeline.py        batch order, on-device gathering, host prefetching.
  auxiliary.py       auxiliary tasks as transforms of a built task set
                     (reconstruction, hints, adversarial, train-only targets)
                     and the marking of tasks as auxiliary.

Three options every task set takes (``GENERIC_OPTIONS``: ``mtlx.tasks.AUXILIARY_OPTION`` /
``TRANSFORMS_OPTION`` / ``BINARY_LOSS_OPTION``, handled here, not by the task-set function):
``task_set.options.auxiliary`` (names of its tasks made auxiliary),
``task_set.options.auxiliary_tasks`` (generated auxiliary tasks; see
``auxiliary.py``) and ``task_set.options.binary_loss`` (the loss of every
binary task, one of ``mtlx.tasks.LOSSES["binary"]``, e.g. 'hinge'; unset: each
task's own, 'logistic' by default). Each is stored in a run config only when
set, so the ids of runs that do not set it do not change.

Adding a TFDS task set (three steps, nothing else to edit)
  1. Write ``tfds_builders/<name>.py``: a ``common.Builder`` subclass whose
     ``_info`` declares ``Tensor``/``ClassLabel``/scalar features (images as
     ``common.image_feature``: ``tfds.features.Image`` needs TensorFlow),
     whose ``_split_generators`` reads the originals from ``self.source_dir``
     (``common.local_files``) or downloads them (``common.download``) and
     returns 'train', 'validation' and 'test'. Defining the class registers it
     with TFDS and in ``tfds_builders.BUILDERS``. Build-time randomness comes
     from the config's ``seed`` (``common.SeedConfig``, ``common.carve``).
  2. In ``tfds_sets.py``, import the builder from its module and write the
     task-set function, decorated with ``tfds_reading.task_set_fn``, taking
     ``*, manual_dir=None, data_dir=None, seed=0`` plus its own options:
     ``builder = built(cls, config, manual_dir, SUBDIRS[...], data_dir)``,
     then ``TaskSet(..., splits=read_splits(builder, transform),
     info=builder_info(builder, paper, ...))`` where ``transform(records)``
     is a module-level function returning ``batch(inputs, targets, weights)``.
     Add the data set's folder under ``manual_dir`` to ``SUBDIRS``.
  3. Add the function to ``TASK_SETS`` below.
  Test it as tests/unit/test_tfds_sets.py does: write tiny originals in
  their own format (tests/fixtures_tfds.py) and build from them, no network.
"""

from __future__ import annotations

import dataclasses

from mtlx import schema
from mtlx.data import auxiliary, synthetic, tfds_sets
from mtlx.plugins import resolve
from mtlx.tasks import AUXILIARY_OPTION, BINARY_LOSS_OPTION, LOSSES, TRANSFORMS_OPTION, TaskSet

GENERIC_OPTIONS = (AUXILIARY_OPTION, TRANSFORMS_OPTION, BINARY_LOSS_OPTION)  # every task set takes them

TASK_SETS = {
    "mmoe_synthetic": synthetic.mmoe_synthetic,
    "synthetic_classification": synthetic.synthetic_classification,
    "multi_mnist": tfds_sets.multi_mnist,
    "multi_fashion": tfds_sets.multi_fashion,
    "one_vs_all": tfds_sets.one_vs_all,
    "omniglot_alphabets": tfds_sets.omniglot_alphabets,
    "census_income": tfds_sets.census_income,
    "conll2003_tagging": tfds_sets.conll2003_tagging,
    "celeb_a": tfds_sets.celeb_a,
    "cifar100": tfds_sets.cifar100,
}


OPTION_RANGES = {  # by option name, for every task-set function (a plug-in's too); types: the signature's
    "n_train": schema.COUNT, "n_validation": schema.INDEX, "n_test": schema.INDEX, "seed": schema.INDEX,
    "dim": schema.COUNT, "num_tasks": schema.COUNT, "num_classes": schema.Range(2), "shared_dim": schema.COUNT,
    "private_dim": schema.COUNT, "hidden": schema.COUNT, "num_sin": schema.INDEX, "noise_std": schema.NONNEG,
    "label_noise": schema.UNIT, "shared_fraction": schema.UNIT, "correlation": schema.Range(-1, 1),
    "image_size": schema.COUNT, "max_len": schema.COUNT, "max_word_len": schema.COUNT, "min_count": schema.COUNT,
    "validation_fraction": schema.Range(0, 1, lo_open=True, hi_open=True),
}


def _split_options(options) -> tuple[dict, dict]:
    """(the task-set function's own options, the generic ones: ``GENERIC_OPTIONS``)."""
    options = dict(options or {})
    return ({k: v for k, v in options.items() if k not in GENERIC_OPTIONS},
            {k: v for k, v in options.items() if k in GENERIC_OPTIONS})


def check_options(fn, name: str, options) -> None:
    """A task-set function's options, without building it: unknown names, types, nan/inf, ``OPTION_RANGES``;
    and the generic options: the auxiliary ones' shape (``auxiliary.check_specs`` / ``check_marked``), the
    binary loss's name (``check_binary_loss``)."""
    options, generic = _split_options(options)
    if BINARY_LOSS_OPTION in generic:
        check_binary_loss(generic[BINARY_LOSS_OPTION])
    if generic.get(TRANSFORMS_OPTION):
        auxiliary.check_specs(generic[TRANSFORMS_OPTION])
    if generic.get(AUXILIARY_OPTION):
        auxiliary.check_marked(generic[AUXILIARY_OPTION])
    if schema.takes_any_option(fn):
        return
    try:
        schema.check_options(schema.signature_params(fn), options, OPTION_RANGES)
    except ValueError as e:
        if not isinstance(e, schema.OptionError):
            raise ValueError(f"task_set {name!r}: {e} (and, for every task set, {list(GENERIC_OPTIONS)})") from None
        raise schema.in_section(e, "task_set.options", f"task set {name!r}") from None


def check_binary_loss(loss) -> None:
    """``task_set.options.binary_loss`` must name one of ``mtlx.tasks.LOSSES['binary']``."""
    if not isinstance(loss, str) or loss not in LOSSES["binary"]:
        raise ValueError(f"task_set.options.{BINARY_LOSS_OPTION}={loss!r} is not valid; choose one of "
                         f"{sorted(LOSSES['binary'])}")


def with_binary_loss(ts: TaskSet, loss: str) -> TaskSet:
    """``ts`` with every binary task trained on ``loss`` (``mtlx.tasks.LOSSES['binary']``); a task set
    without a binary task is an error (the option would do nothing)."""
    check_binary_loss(loss)
    if not any(t.kind == "binary" for t in ts.tasks):
        raise ValueError(f"task_set.options.{BINARY_LOSS_OPTION}={loss!r}: task set {ts.name!r} has no binary task "
                         f"(its tasks' kinds: {sorted({t.kind for t in ts.tasks})})")
    tasks = tuple(dataclasses.replace(t, loss=loss) if t.kind == "binary" else t for t in ts.tasks)
    return dataclasses.replace(ts, tasks=tasks)


def get_task_set(name: str, **options):
    """Build task set ``name`` (a ``TASK_SETS`` key or 'package.module:function'); unknown names or options
    name the valid choices, a bad value (type, nan/inf, range) names ``task_set.options.<option>``. The
    generic options ``auxiliary`` / ``auxiliary_tasks`` are applied to the built set (``auxiliary.apply``),
    then ``binary_loss`` to all its binary tasks (``with_binary_loss``); its splits' ``extras`` are dropped."""
    fn = resolve(TASK_SETS, name, "task_set")
    owner = f"task set {name!r}"
    check_options(fn, name, options)
    own, generic = _split_options(options)
    try:
        ts = fn(**own)
    except schema.OptionError as e:
        raise schema.in_section(e, "task_set.options", owner) from None
    if not isinstance(ts, TaskSet):
        raise ValueError(f"task_set.name={name!r} returned a {type(ts).__name__}, not an mtlx.tasks.TaskSet")
    ts = auxiliary.apply(ts, generic)
    return with_binary_loss(ts, generic[BINARY_LOSS_OPTION]) if BINARY_LOSS_OPTION in generic else ts
