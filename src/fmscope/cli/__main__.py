"""``python -m fmscope.cli``."""

import sys

from fmscope.cli import main

sys.exit(main())
