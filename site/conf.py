"""Sphinx configuration of the course site (built by `make site`, i.e. `python -m course_lib.website`).

The builder copies this folder, the notebooks it was given (already executed in smoke mode) and a generated page of
the stored reference results into one source folder; nothing is executed here. MathJax is served from the site
itself (sphinx-mathjax-offline), so the pages load nothing from outside.
"""

project = "ResNets Are Deeper Than You Think: a course"
author = "the course's authors"
copyright = "the course's authors; paper by A. Mehmeti-Göpel and M. Wand (arXiv 2506.14386)"

extensions = [
    "myst_nb",  # notebooks and MyST Markdown pages
    "sphinx-mathjax-offline",  # the package's module name has dashes; it bundles MathJax 3 and sets mathjax_path
]
exclude_patterns = ["_build", "**.ipynb_checkpoints"]
suppress_warnings = [
    "myst.header",  # the notebooks use "## 1." sections under one "#" title; a later level may skip one
]

# myst-nb: notebooks arrive executed; never run them again.
nb_execution_mode = "off"
nb_merge_streams = True  # one block per cell for print output, as in JupyterLab
nb_render_markdown_format = "myst"  # Markdown outputs (notebook 07's claims table) have tables
myst_enable_extensions = ["dollarmath", "amsmath"]  # $...$ and $$...$$ as in the notebooks

html_theme = "sphinx_book_theme"
html_title = "ResNets Are Deeper Than You Think"
html_favicon = "favicon.svg"  # without one, a browser asks for /favicon.ico and logs the 404 as a console error
html_theme_options = {
    "show_toc_level": 2,
    "home_page_in_toc": True,
}
# The theme logs a console error on a first visit when no colour mode is set ("invalid theme mode").
html_context = {"default_mode": "light"}
