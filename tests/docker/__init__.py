"""A private Docker engine started by the test run (see engine.py, fixtures.py)."""
