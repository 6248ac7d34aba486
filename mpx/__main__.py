"""`python -m mpx` runs the CLI."""

import sys

from mpx.cli import main

sys.exit(main())
