"""HTML to plain text with the standard library's html.parser (for HTML-only messages).

Good enough for mail: block elements become line breaks, list items get "- ", links keep their
target, script/style/head are dropped, whitespace collapses as a browser would (except in
<pre>), and entities are decoded. Never raises on malformed HTML.
"""

from __future__ import annotations

import re
from html.parser import HTMLParser

_BLOCK = frozenset({
    "address", "article", "aside", "blockquote", "dd", "div", "dl", "dt", "fieldset",
    "figcaption", "figure", "footer", "form", "h1", "h2", "h3", "h4", "h5", "h6", "header",
    "hr", "li", "main", "nav", "ol", "p", "pre", "section", "table", "tr", "ul",
})
_PARAGRAPH = frozenset({"p", "h1", "h2", "h3", "h4", "h5", "h6", "blockquote", "table"})
_SKIP = frozenset({"script", "style", "head", "title", "template", "noscript"})
_SPACE = re.compile(r"[ \t\r\n\f]+")


class _TextParser(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.out: list[str] = []
        self.skip = 0
        self.pre = 0
        self.href: list[str | None] = []
        self.newlines = 0  # newlines at the end of the output so far
        self.last = "\n"  # the last character written ("\n" at the start: no leading space)

    def _emit(self, text: str) -> None:
        if not text:
            return
        self.out.append(text)
        stripped = text.rstrip("\n")
        self.newlines = (self.newlines if not stripped else 0) + len(text) - len(stripped)
        self.last = text[-1]

    def _newline(self, count: int = 1) -> None:
        if self.out:  # no blank lines before the first text
            self._emit("\n" * max(0, count - self.newlines))

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in _SKIP:
            self.skip += 1
        elif tag == "br":
            self._emit("\n")
        elif tag == "pre":
            self.pre += 1
            self._newline(2)
        elif tag in _PARAGRAPH:
            self._newline(2)
        elif tag == "li":
            self._newline()
            self._emit("- ")
        elif tag in _BLOCK:
            self._newline()
        elif tag in ("td", "th") and self.last not in "\n\t":
            self._emit("\t")
        if tag == "a":
            self.href.append(dict(attrs).get("href"))

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag not in _SKIP and tag != "a":
            self.handle_starttag(tag, attrs)

    def handle_endtag(self, tag: str) -> None:
        if tag in _SKIP:
            self.skip = max(0, self.skip - 1)
        elif tag == "pre":
            self.pre = max(0, self.pre - 1)
            self._newline(2)
        elif tag in _PARAGRAPH:
            self._newline(2)
        elif tag in _BLOCK:
            self._newline()
        elif tag == "a" and self.href:
            href = self.href.pop()
            if href and not href.startswith(("#", "javascript:", "mailto:")):
                self._emit(f" <{href}>")

    def handle_data(self, data: str) -> None:
        if self.skip:
            return
        if self.pre:
            self._emit(data)
            return
        text = _SPACE.sub(" ", data)
        if self.last in " \n\t":
            text = text.lstrip(" ")
        self._emit(text)


def html_to_text(html: str) -> str:
    """The readable text of an HTML document: paragraphs separated by blank lines, no markup."""
    parser = _TextParser()
    try:
        parser.feed(html)
        parser.close()
    except (AssertionError, ValueError):  # html.parser gives up on some broken markup
        pass
    text = "\n".join(line.rstrip(" \t") for line in "".join(parser.out).split("\n"))
    text = re.sub(r"\n{3,}", "\n\n", text).strip("\n")
    return text + "\n" if text else ""
