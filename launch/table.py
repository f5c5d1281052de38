r"""Comparison table of an experiment directory: markdown to stdout, table.{md,tex,csv} into it.

  python -m launch.table RUN_DIR [--select final|best_validation]

Reads run directories only (summary.json of each run, experiment.json); see
mtlx/report/ for the conventions (mean ± std over seeds, delta_m, best
entry in bold, paper numbers, failed runs).
"""

from absl import app, flags, logging

from mtlx import report

_SELECT = flags.DEFINE_enum("select", "final", sorted(report.SELECT),
                            "final: test metrics at the last step; best_validation: test metrics at the best "
                            "validation step.")


def table(workdir: str, select: str = "final", echo=print) -> dict:
    """Write table.{md,tex,csv} into ``workdir`` and print the markdown; returns ``report.write_tables``'s paths."""
    paths = report.write_tables(workdir, select=select)
    echo(paths["markdown"], end="")
    for ext in ("md", "tex", "csv"):
        logging.info("wrote %s", paths[ext])
    return paths


def main(argv):
    if len(argv) != 2:
        raise app.UsageError("usage: python -m launch.table RUN_DIR [--select final|best_validation]")
    table(argv[1], select=_SELECT.value)


if __name__ == "__main__":
    app.run(main)
