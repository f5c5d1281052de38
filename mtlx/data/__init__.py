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

import inspect

from mtlx.data import synthetic, tfds_sets

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


def get_task_set(name: str, **options):
    """Build task set ``name``; unknown names or options name the valid choices."""
    if name not in TASK_SETS:
        raise ValueError(f"task_set.name={name!r} is not valid; choose one of {sorted(TASK_SETS)}")
    fn = TASK_SETS[name]
    params = inspect.signature(fn).parameters
    if not any(p.kind == p.VAR_KEYWORD for p in params.values()):
        unknown = set(options) - set(params)
        if unknown:
            raise ValueError(f"task_set {name!r}: unknown option(s) {sorted(unknown)}; valid options {sorted(params)}")
    return fn(**options)
