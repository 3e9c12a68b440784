"""twagent: a Tower agent that runs the platform's shell commands."""

from .version import COMMIT, VERSION

__version__ = VERSION
__all__ = ["COMMIT", "VERSION", "__version__"]
