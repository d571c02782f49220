"""``python -m rotation``: the CLI."""

import sys

from rotation.cli import main

sys.exit(main())
