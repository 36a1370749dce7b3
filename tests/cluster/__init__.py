"""A real Kubernetes cluster for the tests, built and started by the repository itself.

See tests/cluster/README.md and the fixtures documented in tests/cluster/plugin.py.
"""
