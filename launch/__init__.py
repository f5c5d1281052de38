"""Command-line entry points (thin absl apps): run, table, plot, bench."""
