r"""Paper figures of an experiment directory, written as PNGs into RUN_DIR/figures/.

  python -m launch.plot RUN_DIR [--tasks a,b] [--select final|best_validation]

Reads run directories only. Figures that do not apply (no sweep, no mixing
weights, one task, no baseline) are skipped with a printed note. Error bars
are 95% confidence intervals over seeds (Δm%: bootstrap), cut at each
metric's range; bars say their n; a bar axis that does not start at 0 is
marked broken; learning curves show the validation loss beside the training
loss. Runs of one group whose configurations differ beyond the seed are
drawn pooled, with a printed note (launch.table refuses them).
See mtlx.report.figures.FIGURES for the list.

The flags are defined when this file runs as the program (``define_flags``),
not on import: launch.bench has a --tasks flag of its own, and both modules
may be imported in one process (the tests do).
"""

from absl import app, flags

from mtlx import report


def define_flags() -> None:
    flags.DEFINE_list("tasks", None, "two task names for the trade-off scatter (default: the first two tasks).")
    flags.DEFINE_enum("select", None, sorted(report.SELECT),
                      "final: test metrics at the last step; best_validation: test metrics at the best "
                      "validation step. Default: the experiment's config.select (experiment.json), else final.")


def plot(workdir: str, tasks=None, select: str | None = None, echo=print) -> dict:
    """Write the figures of ``workdir``; print a note per skipped figure and a line per file written."""
    written = report.plot_all(workdir, tasks=tasks, select=select, log=lambda m: echo(f"note: {m}"))
    for path in written.values():
        echo(f"wrote {path}")
    return written


def main(argv):
    if len(argv) != 2:
        raise app.UsageError("usage: python -m launch.plot RUN_DIR [--tasks a,b]")
    plot(argv[1], tasks=flags.FLAGS.tasks, select=flags.FLAGS.select)


if __name__ == "__main__":
    define_flags()
    app.run(main)
