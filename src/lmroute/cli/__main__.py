"""``python -m lmroute.cli``: the ``lmroute`` command without its installed script."""

import sys

from lmroute.cli import main

if __name__ == "__main__":
    sys.exit(main())
