"""course_lib: the tested library behind the course on "ResNets Are Deeper Than You Think" (arXiv 2506.14386).

Modules, one concept each (see DESIGN.md): config, data, models, linearize, paths, theory, train, experiments, viz.
Import them as modules, e.g. `from course_lib import config, data, models`.
"""

__version__ = "0.1.0"
