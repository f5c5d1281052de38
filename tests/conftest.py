import os

os.environ.setdefault("JAX_PLATFORMS", "cpu")

pytest_plugins = ["fixtures_report", "fixtures_train"]
