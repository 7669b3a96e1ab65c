"""`python -m eventdesk` is the same as the `eventdesk` command."""

import multiprocessing
import sys

from eventdesk.cli import main

# The bundled app (PyInstaller) is this script: a worker process it spawns (the filter's scan,
# eventdesk/core/scan_worker.py) must run the worker, not open a second window.
multiprocessing.freeze_support()
sys.exit(main())
