"""Results turned into files a paper can use.

Owns: the per-seed results table and its CSV and JSON files (``results``), their aggregate over
seeds and the ranking by Welch's t-test (``aggregate``), the learning curves' CSV and figures
(``curves``), the feature space's calibration table and figure (``calibration``), the tables
in Markdown and LaTeX booktabs (``tables``), the report's index page (``writer``) and its
figures (``figures``). Imports no torch.
May import: the base modules and ``sketchgen.evaluation`` (the metric registry, read by name).
"""
