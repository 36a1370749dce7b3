"""Building the controller image locally (no registry) and loading it into the test node."""
