"""HTML from Jinja2 templates (shared/templates/*.html.j2) with autoescape on: every value a
template prints is escaped unless it is already markup, so no call site has to remember to.

Control characters (which mail servers refuse and no page needs) become spaces, and None prints
as nothing. StrictUndefined: a name a template uses but the caller did not pass is an error, not
an empty string.
"""

from __future__ import annotations

import re
from functools import cache
from pathlib import Path
from typing import Any

from jinja2 import Environment, FileSystemLoader, StrictUndefined
from markupsafe import Markup

TEMPLATES = Path(__file__).with_name("templates")
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")


def clean(value: str) -> str:
    """A value with control characters as spaces (what a mail header or body may carry)."""
    return _CONTROL.sub(" ", value)


def _finalize(value: Any) -> Any:
    if value is None:
        return ""
    if isinstance(value, Markup) or not isinstance(value, str):
        return value
    return clean(value)


@cache
def environment() -> Environment:
    return Environment(
        loader=FileSystemLoader(TEMPLATES),
        autoescape=True,  # every template here is HTML
        undefined=StrictUndefined,
        finalize=_finalize,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=False,
    )


def render_template(name: str, **context: Any) -> str:
    return environment().get_template(name).render(**context)
