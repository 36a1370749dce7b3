"""`python -m devjobs` is the same as the `devjobs` command."""

import sys

from devjobs.cli import main

sys.exit(main())
