"""``python -m pliant.bench``: the ``pliant bench`` command."""

import sys

from pliant.bench.cli import main

sys.exit(main())
