"""The templates escape by default and refuse a name the caller did not pass."""

import pytest
from jinja2 import UndefinedError

from shared.templating import render_template


def test_a_template_missing_a_value_is_an_error_not_an_empty_cell():
    with pytest.raises(UndefinedError):
        render_template("mail.html.j2", cleared=False, subject="s", facts=(), advice="a")


def test_values_are_escaped_none_prints_nothing_and_control_characters_become_spaces():
    body = render_template(
        "mail.html.j2",
        cleared=False,
        subject="a\x07<b>",
        facts=(("Error", None),),
        advice="x",
        run_id="r",
        tenant="<Contoso>",
    )
    assert "<b>a &lt;b&gt;</b>" in body and "\x07" not in body
    assert "for tenant &lt;Contoso&gt;" in body
    assert ">Error</td><td" in body and ">None<" not in body
