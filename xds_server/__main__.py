"""`python -m xds_server` runs the command line."""

import sys

from xds_server.cli import main

sys.exit(main())
