"""Entry point of the packaged app (PyInstaller): the ``medstation`` command."""

import multiprocessing
import sys

if __name__ == "__main__":
    multiprocessing.freeze_support()  # the loader's worker processes start from this executable
    from medstation.cli import main

    sys.exit(main())
