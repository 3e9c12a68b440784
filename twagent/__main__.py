"""`python -m twagent`: the same program as the `tw-agent` command."""

import sys

from .cli import main

sys.exit(main())
