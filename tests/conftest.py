import os

os.environ.setdefault("JAX_PLATFORMS", "cpu")

pytest_plugins = ["fixtures_archs"]
