"""The ``DBOS`` façade, in parts by area; ``_dbos.py`` puts them together."""
