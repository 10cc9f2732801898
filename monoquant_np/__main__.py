"""``python -m monoquant_np`` runs the command line."""

import sys

from .cli import main

if __name__ == "__main__":  # importing the module (a test, a doc tool) does not run the command line
    sys.exit(main())
