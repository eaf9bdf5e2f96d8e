"""diffill's language server: protocol only. Model work goes through ``diffill.engine.Engine``."""
