"""`pytest harness`: everything (options, fixtures, reports) comes from natlab's pytest plugin."""

pytest_plugins = ("natlab.pytest_plugin",)
