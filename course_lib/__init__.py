"""course_lib: the tested library behind the course on "ResNets Are Deeper Than You Think" (arXiv 2506.14386).

Modules, one concept each (see DESIGN.md): config, data, models, linearize, paths, theory, train, experiments, viz.
Import them as modules, e.g. `from course_lib import config, data, models`.
"""

__version__ = "0.1.0"

# Where the course is published: the Colab badges and the Colab install cell of every notebook are generated from
# these two values (tests/test_notebooks.py checks them).
REPO_SLUG = "resnets-deeper/course"
REPO_REF = "main"
