"""`python -m feste ...` is the `feste` command."""
import sys

from .cli import main

sys.exit(main())
