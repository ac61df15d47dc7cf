"""Results turned into files a paper can use.

Owns: the tables (Markdown, LaTeX booktabs, CSV, JSON), the report's index page and its
figures.
May import: the base modules and ``sketchgen.evaluation`` (the metric registry, read by name).
"""
