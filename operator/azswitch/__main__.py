"""``python -m azswitch`` is the same as the ``azswitch`` command."""

import sys

from azswitch.cli import main

sys.exit(main())
