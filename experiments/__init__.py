"""Experiment configs: one file per experiment, each with ``get_config(arg=None)``.

Launch one with ``python -m launch.run --config experiments/<name>.py[:smoke]``.
"""
