"""devjobs: CI-style jobs for preview environments, declared once, run anywhere."""

__version__ = "0.1.0"
