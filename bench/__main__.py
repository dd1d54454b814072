"""`python -m bench`: the whole run (see the package docstring)."""

import sys

from bench.main import main

sys.exit(main())
