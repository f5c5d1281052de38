r"""Paper figures of an experiment directory, written as PNGs into RUN_DIR/figures/.

  python -m launch.plot RUN_DIR [--tasks a,b] [--select final|best_validation]

Reads run directories only. Figures that do not apply (no sweep, no mixing
weights, one task, no single_task baseline) are skipped with a printed note.
See mtlx.report.plot_all for the list.
"""

from absl import app, flags

from mtlx import report

_TASKS = flags.DEFINE_list("tasks", None, "two task names for the trade-off scatter (default: the first two tasks).")
_SELECT = flags.DEFINE_enum("select", "final", sorted(report.SELECT),
                            "final: test metrics at the last step; best_validation: test metrics at the best "
                            "validation step.")


def main(argv):
    if len(argv) != 2:
        raise app.UsageError("usage: python -m launch.plot RUN_DIR [--tasks a,b]")
    written = report.plot_all(argv[1], tasks=_TASKS.value, select=_SELECT.value, log=lambda m: print(f"note: {m}"))
    for path in written.values():
        print(f"wrote {path}")


if __name__ == "__main__":
    app.run(main)
