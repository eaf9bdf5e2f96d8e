"""diffill: code infilling by masked diffusion. The engine and CLI shared by every front end."""

__version__ = "0.1.0"
