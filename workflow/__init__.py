"""The workflow behind scripts/: grids and their tasks (sweep), tables and statistics
(summarize), U-LiRA's shadow models (ulira), collecting results (collect).

These modules run the entry scripts as commands and read what runs wrote through
`paths.py`; they call no unlearning method.
"""
