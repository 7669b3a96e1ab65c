"""`python -m eventdesk` is the same as the `eventdesk` command."""

import sys

from eventdesk.cli import main

sys.exit(main())
