"""Every suite's fixtures come from the test stack (`devkit`), shared with the demo and benchmarks."""

pytest_plugins = ["devkit.fixtures"]
