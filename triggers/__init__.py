"""The Functions app's triggers as blueprints, registered by function_app.py: http.py (the HTTP
API, adapters onto shared/api.py) and background.py (the nightly timer and the run queue's
worker). Nothing here decides anything; the engine is shared/ (which never imports
azure.functions)."""

from __future__ import annotations

import functools

from shared.settings import Settings


@functools.cache
def settings() -> Settings:
    """Parsed once per worker; a bad setting raises ConfigurationError naming it."""
    return Settings.from_env()
