"""A Sphinx extension local to the book: page fixes that Jupyter Book 1.x's configuration cannot express.

sphinx-thebe's and sphinx-togglebutton's inline configuration scripts reach the page twice (once with
filename None, once with ""), so Sphinx's own de-duplication misses them; the page then declares
``const THEBE_JS_URL`` twice and the browser reports "Identifier 'THEBE_JS_URL' has already been
declared" on every page. The book's page check (tests/test_book.py) fails on any console error, so the
duplicates are dropped here.
"""

from __future__ import annotations


def _script_key(script) -> tuple:
    attributes = getattr(script, "attributes", {}) or {}
    # An inline script is registered with filename None by some extensions and "" by others.
    filename = getattr(script, "filename", script) or None
    return str(filename), tuple(sorted((k, str(v)) for k, v in attributes.items()))


def drop_duplicate_scripts(app, pagename, templatename, context, doctree) -> None:
    scripts = context.get("script_files")
    if not scripts:
        return
    seen, unique = set(), []
    for script in scripts:
        key = _script_key(script)
        if key not in seen:
            seen.add(key)
            unique.append(script)
    context["script_files"] = unique


def setup(app):
    # Late priority: after every extension has added its scripts to the page context.
    app.connect("html-page-context", drop_duplicate_scripts, priority=900)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
