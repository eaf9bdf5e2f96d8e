"""Small statistics helpers: the file `make run` fills a hole in."""

import math


def mean(values):
    """Arithmetic mean of a non-empty sequence."""
    return sum(values) / len(values)


def variance(values):
    """Population variance."""
    m = mean(values)
    return sum((x - m) ** 2 for x in values) / len(values)


def stdev(values):
    """Population standard deviation."""
    
