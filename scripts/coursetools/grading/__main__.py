"""``python -m coursetools.grading``: see :mod:`coursetools.grading.cli`."""

import sys

from .cli import main

sys.exit(main())
