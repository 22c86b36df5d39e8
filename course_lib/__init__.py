"""course_lib: the tested library behind the course on "ResNets Are Deeper Than You Think" (arXiv 2506.14386).

Modules, one concept each (see DESIGN.md): config, data, models, linearize, paths, theory, train, experiments, viz;
exercises (checkers with feedback for the notebooks' exercises) and student (their generated student copies).
Import them as modules, e.g. `from course_lib import config, data, models`.
"""

__version__ = "0.1.0"

# Where the course is published: the Colab badges and the Colab install cell of every notebook are generated from
# these two values (tests/test_notebooks.py checks them). A notebook's badge and its install cell share REPO_REF.
REPO_SLUG = "resnets-deeper/course"
REPO_REF = "main"
# The release the README's Binder badge launches. Binder builds are cached per commit, so a tag (never a branch)
# keeps classroom launches fast and the environment fixed. Change it when a new release is tagged, then run
# `python -m course_lib notebook-meta --write` (tests/test_environments.py checks the README block).
RELEASE_TAG = "v0.1.0"
