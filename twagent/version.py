"""The agent's version and the commit it was built from.

`setup.py` rewrites COMMIT in the built copy of this module; a source tree
that was never built says "unknown".
"""

VERSION = "0.1.0"
COMMIT = "unknown"
