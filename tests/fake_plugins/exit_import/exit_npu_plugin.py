"""A vendor plugin that ends the process at import (a stray sys.exit in its setup code)."""

import sys

sys.exit(3)
