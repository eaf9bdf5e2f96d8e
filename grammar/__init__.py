"""tree-sitter: language registry, parsing, validity checks, the sampler constraint, span selection."""
