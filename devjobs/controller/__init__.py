"""`devjobs controller`: runs each lifecycle point's jobs as Environments move along.

observe (API JSON -> `Observed`) -> decide (pure, composed of `lifecycle`, `manual`,
`initjobs`, `jobstates`, `reporting`) -> `actions` -> act (every write, GitHub's too);
`main` keeps one reflector per kind, the work queue and the workers; `leader` the Lease.
"""
