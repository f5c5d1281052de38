"""Tables (markdown, LaTeX, CSV) and figures (matplotlib) from run directories.

Everything here reads an experiment directory through ``mtlx.results`` only;
no JAX, no model code. ``launch/table.py`` and ``launch/plot.py`` are thin
wrappers around ``write_tables`` and ``plot_all``.

  aggregate.py     seed means, stds and 95% CIs, delta_m (Maninis et al. 2019)
                   against experiment.json's ``grid.baseline``, Welch tests, best
                   marks, paper matching
  stats.py         confidence intervals, Welch's t-test, Holm, bootstrap (scipy)
  pooling.py       the guard against averaging runs of different configurations
  tables.py        markdown / LaTeX / CSV rendering, ``write_tables``
  figures.py       every figure, registered in ``FIGURES``; ``plot_all``
  figure_data.py   the numbers the figures draw
  plotting.py      the plotting context, colours, matplotlib helpers

``from mtlx import report; report.write_tables(workdir)`` keeps working: the
names below were those of the old single-module ``mtlx/report.py``.
"""

from mtlx.results import read_experiment as load_experiment
from mtlx.report.aggregate import (
    DELTA_M_CONVENTION, SELECT, aggregate, baseline_label, best_marks, delta_m, find_baseline, fmt_value,
    has_baseline, load_runs, mean_std, metric_columns, metric_direction, short_field, sweep_label,
    task_meta, task_sections, tasks_by_sweep)
from mtlx.report.figure_data import learning_curve_data, mixing_data, sweep_plot_data, tradeoff_data
from mtlx.report.figures import FIGURES, Figure, plot_all
from mtlx.report.paper import compares_weightings, match_paper
from mtlx.report.plotting import colours_for
from mtlx.report.tables import (
    fmt_mean_std, markdown_table, render_csv, render_latex, render_markdown, table_model,
    write_tables)

__all__ = [
    "DELTA_M_CONVENTION", "FIGURES", "Figure", "SELECT", "aggregate", "baseline_label", "best_marks", "colours_for", "compares_weightings",
    "delta_m", "find_baseline", "fmt_mean_std", "fmt_value", "has_baseline", "learning_curve_data", "load_experiment",
    "load_runs", "markdown_table", "match_paper", "mean_std", "metric_columns", "metric_direction", "mixing_data",
    "plot_all", "render_csv", "render_latex", "render_markdown", "short_field", "sweep_label", "sweep_plot_data",
    "table_model", "task_meta", "task_sections", "tasks_by_sweep", "tradeoff_data", "write_tables",
]
