"""`devjobs controller`: runs each lifecycle point's jobs as Environments move along.

observe (API JSON -> plain data) -> decide (pure `reconcile`) -> act (the few writes);
`main` keeps the watches, the work queue and the Lease.
"""
