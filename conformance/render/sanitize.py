"""Text a backend or plugin supplies, made safe for each report format.

`clean` is shared: ANSI escape sequences are dropped, lone surrogates become '?', and characters XML 1.0 does
not allow (other control characters, U+FFFE, U+FFFF) are written as visible `\\xNN` escapes. Each format then
escapes its own syntax: `html`, `markdown` (and `markdown_code` inside backticks) and `markup` (rich).
"""

from __future__ import annotations

import html as _html
import re
from typing import Any

from rich.markup import escape as _rich_escape

_ANSI = re.compile(r"\x1b\[[0-?]*[ -/]*[@-~]|\x1b\][^\x07\x1b]*(?:\x07|\x1b\\)?|\x1b[@-_]")
_NOT_XML = re.compile("[^\t\n\r\x20-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")


def clean(text: Any) -> str:
    """`text` as a string that every writer accepts: valid UTF-8, XML 1.0 characters only, no ANSI codes."""
    value = text if isinstance(text, str) else str(text)
    value = value.encode("utf-8", "replace").decode("utf-8")  # lone surrogates -> '?'
    value = _ANSI.sub("", value)
    return _NOT_XML.sub(lambda match: f"\\x{ord(match.group()):02x}", value)


def html(text: Any) -> str:
    """Clean, then HTML-escaped (quotes too: safe in text and in attributes)."""
    return _html.escape(clean(text), quote=True)


def markdown(text: Any) -> str:
    """Clean, then safe in a Markdown table cell: no raw HTML, no cell-ending pipes, no line breaks."""
    value = clean(text).replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
    return value.replace("|", "\\|").replace("\r\n", " ").replace("\r", " ").replace("\n", " ")


def markdown_code(text: Any) -> str:
    """Clean, for a `code span` in a table cell: no backticks (they would end it), pipes escaped, one line."""
    value = clean(text).replace("`", "'").replace("|", "\\|")
    return value.replace("\r\n", " ").replace("\r", " ").replace("\n", " ")


def markup(text: Any) -> str:
    """Clean, then rich-markup-escaped: a plugin's '[/]' or '[red]' prints as written."""
    return _rich_escape(clean(text))
