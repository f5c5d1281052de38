r"""Comparison table of an experiment directory: markdown to stdout, table.{md,tex,csv} into it.

  python -m launch.table RUN_DIR [--select final|best_validation] [--main] [--pool_configs]

Reads run directories only (summary.json of each run, experiment.json); see
mtlx/report/ for the conventions (mean ± 95% CI over seeds, Welch's t-test
against the baseline with Holm's correction, Δm% with a bootstrap interval,
best entry in bold, paper numbers, failed runs). Runs of one row whose
configurations differ beyond the seed (and experiment.json's
``grid.seed_paths``) are refused, naming the fields; ``--pool_configs``
averages them anyway and says so in the notes.
"""

import sys

from absl import app, flags, logging

from mtlx import report
from mtlx.report.pooling import PoolingError

_SELECT = flags.DEFINE_enum("select", None, sorted(report.SELECT),
                            "final: test metrics at the last step; best_validation: test metrics at the best "
                            "validation step. Default: the experiment's config.select (experiment.json), else final.")
_MAIN = flags.DEFINE_bool("main", False, "markdown/LaTeX: each task's main metric only (the CSV keeps every metric).")
_POOL = flags.DEFINE_bool("pool_configs", False, "average runs of one row whose configurations differ beyond the "
                          "seed (refused by default); the table's notes name the differing fields.")


def table(workdir: str, select: str | None = None, echo=print, main_only: bool = False,
          pool_configs: bool = False) -> dict:
    """Write table.{md,tex,csv} into ``workdir`` and print the markdown; returns ``report.write_tables``'s paths."""
    paths = report.write_tables(workdir, select=select, main_only=main_only, pool_configs=pool_configs)
    echo(paths["markdown"], end="")
    for ext in ("md", "tex", "csv"):
        logging.info("wrote %s", paths[ext])
    return paths


def main(argv):
    if len(argv) != 2:
        raise app.UsageError("usage: python -m launch.table RUN_DIR [--select final|best_validation] [--main] "
                             "[--pool_configs]")
    try:
        table(argv[1], select=_SELECT.value, main_only=_MAIN.value, pool_configs=_POOL.value)
    except PoolingError as e:
        sys.exit(f"launch.table: {e}")


if __name__ == "__main__":
    app.run(main)
