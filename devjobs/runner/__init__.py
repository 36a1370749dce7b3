"""`devjobs run`: a plan's jobs, on this machine (`local`) or in an Environment's
cluster (`cluster`). Both are shells over pure cores; neither imports the CLI, which
builds their typed requests."""
