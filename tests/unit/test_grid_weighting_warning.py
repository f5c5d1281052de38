"""mtlx.grid.validate warns (stderr, one line, no error) when a gradient-based weighting meets an architecture
with no shared parameters (issue 17)."""

from tiny_grid import tiny
from mtlx import grid


def _validate(archs, weighting, capsys):
    c = tiny(archs=archs)
    c.weightings = ({"name": weighting},)
    grid.validate(grid.expand(c))
    return capsys.readouterr().err


def test_gradient_weighting_on_single_task_warns_once(capsys):
    err = _validate(("single_task",), "mgda", capsys)
    lines = [ln for ln in err.splitlines() if ln.startswith("warning:")]
    assert len(lines) == 1 and "'mgda'" in lines[0] and "'single_task'" in lines[0]


def test_no_warning_with_shared_parameters_or_a_loss_weighting(capsys):
    assert "warning:" not in _validate(("hard",), "mgda", capsys)
    assert "warning:" not in _validate(("single_task",), "equal", capsys)
