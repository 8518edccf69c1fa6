"""`python -m kdcore`: the command line (see kdcore/cli.py)."""

import sys

from kdcore.cli import main

if __name__ == "__main__":
    sys.exit(main())
