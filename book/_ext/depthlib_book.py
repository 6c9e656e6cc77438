"""A Sphinx extension local to the book: page fixes that Jupyter Book 1.x's configuration cannot express.

**The repository link and the launch buttons.** `_config.yml` cannot know where a clone came from, and Jupyter
Book's default repository is its own. At ``config-inited`` the book's repository is taken from
``$DEPTHLIB_REPOSITORY_URL`` or the clone's ``origin`` remote (``git@github.com:org/repo.git`` becomes
``https://github.com/org/repo``), its branch from ``$DEPTHLIB_REPOSITORY_BRANCH`` or the checked-out branch.
With one, the header gets the repository button and Binder and Colab launch buttons; without one (a copy with
no remote), neither, rather than links to another project. A chapter's page is ``book/<name>`` (the executed
copy, not committed), so its launch links are pointed at ``notebooks/<name>.ipynb``, the chapter itself.

sphinx-thebe's and sphinx-togglebutton's inline configuration scripts reach the page twice (once with
filename None, once with ""), so Sphinx's own de-duplication misses them; the page then declares
``const THEBE_JS_URL`` twice and the browser reports "Identifier 'THEBE_JS_URL' has already been
declared" on every page. The book's page check (tests/test_book.py) fails on any console error, so the
duplicates are dropped here.
"""

from __future__ import annotations

import os
import re
import subprocess

BINDER_URL = "https://mybinder.org"
COLAB_URL = "https://colab.research.google.com"


def _git(srcdir: str, *args: str) -> str:
    try:
        out = subprocess.run(["git", "-C", str(srcdir), *args], capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return ""
    return out.stdout.strip() if out.returncode == 0 else ""


def repository_url(srcdir: str) -> str:
    """The https URL of the book's repository, or "" when neither the environment nor git names one."""
    url = os.environ.get("DEPTHLIB_REPOSITORY_URL") or _git(srcdir, "remote", "get-url", "origin")
    ssh = re.match(r"^(?:ssh://)?git@([^:/]+)[:/](.+)$", url)
    if ssh:
        url = f"https://{ssh.group(1)}/{ssh.group(2)}"
    url = re.sub(r"\.git$", "", url.rstrip("/"))
    # only a hosted repository the launch services understand; never a local path
    return url if re.match(r"^https://(github\.com|gitlab\.com)/[^/]+/[^/]+$", url) else ""


def configure_repository(app, config) -> None:
    options = dict(config.html_theme_options or {})
    url = repository_url(app.srcdir)
    launch = dict(options.get("launch_buttons") or {})
    if url:
        branch = os.environ.get("DEPTHLIB_REPOSITORY_BRANCH") or _git(app.srcdir, "rev-parse", "--abbrev-ref", "HEAD")
        options.update(repository_url=url, repository_branch=branch if branch and branch != "HEAD" else "main",
                       use_repository_button=True, path_to_docs="")
        launch.update(binderhub_url=BINDER_URL, colab_url=COLAB_URL)
    else:
        options.update(repository_url="", use_repository_button=False, use_edit_page_button=False,
                       use_issues_button=False)
        launch.update(binderhub_url="", colab_url="", jupyterhub_url="")
    options["launch_buttons"] = launch
    config.html_theme_options = options


def _rewrite(buttons, old: str, new: str) -> None:
    for button in buttons or []:
        if isinstance(button, dict):
            # launch links only (Binder, Colab: absolute URLs); the download button's _sources/... stays
            if isinstance(button.get("url"), str) and button["url"].startswith(("https://", "http://")):
                button["url"] = button["url"].replace(old, new)
            _rewrite(button.get("buttons"), old, new)


def launch_the_chapter(app, pagename, templatename, context, doctree) -> None:
    """Binder and Colab open ``notebooks/<name>.ipynb`` (in the repository), not ``book/<name>.ipynb``."""
    if pagename.startswith("book/"):
        name = pagename.removeprefix("book/")
        _rewrite(context.get("header_buttons"), f"/book/{name}.ipynb", f"/notebooks/{name}.ipynb")


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
    app.connect("config-inited", configure_repository)
    # Late priority: after every extension has added its scripts and the theme its launch buttons.
    app.connect("html-page-context", drop_duplicate_scripts, priority=900)
    app.connect("html-page-context", launch_the_chapter, priority=900)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
