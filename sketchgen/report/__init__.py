"""Results turned into files a paper can use.

Owns: the results table and its CSV and JSON files (``results``), the tables in Markdown and
LaTeX booktabs (``tables``), the report's index page (``writer``) and its figures
(``figures``). Imports no torch.
May import: the base modules and ``sketchgen.evaluation`` (the metric registry, read by name).
"""
