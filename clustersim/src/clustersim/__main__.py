"""`python -m clustersim ...`: see `clustersim.cli`."""

import sys

from clustersim.cli import main

sys.exit(main())
