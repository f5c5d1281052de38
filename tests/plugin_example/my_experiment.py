"""The README's example experiment: the task set of my_tasks.py (beside this file) by import path.

  python -m launch.run --config my_experiment.py --workdir my_results
"""

from mtlx.grid import experiment_config


def get_config(arg=None):
    c = experiment_config()
    c.experiment = "my_experiment"
    c.run.task_set.name = "my_tasks:make"  # module:function; modules beside this file are importable
    c.run.task_set.options = {"n_train": 512}
    c.run.steps, c.run.eval_every, c.run.checkpoint_every = 200, 100, 100
    c.architectures = ({"name": "hard"}, {"name": "single_task"})
    if arg == "smoke":  # what the tests run: seconds
        c.run.steps, c.run.eval_every, c.run.log_every, c.run.checkpoint_every = 6, 3, 3, 3
        c.run.batch_size, c.run.backbone.blocks = 32, [{"kind": "dense", "features": 8}]
    return c
