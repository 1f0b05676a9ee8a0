"""Local development and the demo: embedded SQLite, debug pages, a throwaway secret key."""

from .base import *  # noqa: F403
from .base import SECRET_KEY, env

DEBUG = env.bool("DEBUG", default=True)
SECRET_KEY = SECRET_KEY or "development-only-insecure-key-do-not-use-in-production"
