"""Sphinx configuration of the taskhub documentation site (`make docs`).

The pages are the Markdown files of this folder, read with MyST; `make docs` builds them
with warnings as errors. tests/test_docs.py runs every ```python example they contain.
"""
project = "taskhub"
author = "the taskhub developers"
copyright = "the taskhub developers"  # noqa: A001 - the name Sphinx reads

extensions = ["myst_parser"]
source_suffix = {".md": "markdown"}
root_doc = "index"
exclude_patterns = ["_build"]
myst_heading_anchors = 3  # links like taskdb.md#the-query-language resolve
html_theme = "alabaster"
html_static_path = []
html_title = "taskhub"
pygments_style = "sphinx"
