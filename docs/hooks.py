"""MkDocs hook: kdtool's docstrings are written with Sphinx roles (:class:`Name`, :meth:`~a.b.name`) and
reST's ``Example::``, which mkdocstrings renders as they are. The API page shows the name alone."""

import re

ROLE = re.compile(r":(?:attr|class|data|exc|func|meth|mod|obj):<code>(~?)([^<]*)</code>")


def _name(match: re.Match) -> str:
    text = match[2].rsplit(".", 1)[-1] if match[1] else match[2]
    return f"<code>{text}</code>"


def on_page_content(html: str, page, config, files) -> str:
    if "doc-heading" not in html:  # only pages with an API reference
        return html
    return ROLE.sub(_name, html).replace("::</p>", ":</p>")
