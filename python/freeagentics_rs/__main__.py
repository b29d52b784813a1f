"""``python -m freeagentics_rs``: the ``freeagentics-rs`` command."""

import sys

from .cli import main

sys.exit(main())
