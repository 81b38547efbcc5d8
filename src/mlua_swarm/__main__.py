"""`python -m mlua_swarm` runs the `mse` command line."""

import sys

from .cli.main import main

sys.exit(main())
