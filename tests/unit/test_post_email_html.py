"""HTML-only message bodies become readable text (stdlib html.parser)."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from mailopsd.forward.html_text import html_to_text


def test_paragraphs_breaks_and_entities() -> None:
    html = ("<html><head><title>T</title><style>p {color: red}</style></head><body>"
            "<p>Hello <b>w&eacute;rld</b>,</p>\n<p>second   para<br>line two</p></body></html>")
    assert html_to_text(html) == "Hello wérld,\n\nsecond para\nline two\n"


def test_lists_links_tables_and_pre() -> None:
    html = ("<ul><li>one</li><li>two</li></ul><a href='https://x.example/a'>link</a> "
            "<a href='#top'>top</a><pre>  keep\n    indent</pre>"
            "<table><tr><td>1</td><td>2</td></tr><tr><td>3</td><td>4</td></tr></table>")
    assert html_to_text(html) == ("- one\n- two\nlink <https://x.example/a> top\n\n"
                                  "  keep\n    indent\n\n1\t2\n3\t4\n")


def test_scripts_styles_and_comments_are_dropped() -> None:
    html = "<script>alert('x')</script><!-- hidden --><style>a{}</style>visible"
    assert html_to_text(html) == "visible\n"


def test_broken_markup_and_empty_input() -> None:
    assert html_to_text("<p>unclosed <div>x</p></span>") == "unclosed\nx\n"
    assert html_to_text("") == ""
    assert html_to_text("<p>   </p>") == ""


@settings(max_examples=300, deadline=None)
@given(st.text(alphabet=st.sampled_from(list("<>/=\"' &;#abcdilpr!-\n")), max_size=300))
def test_any_markup_gives_text_without_crashing(html: str) -> None:
    text = html_to_text(html)
    assert isinstance(text, str)
    assert "\n\n\n" not in text
