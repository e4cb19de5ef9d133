"""Evaluation: the judge (pixels → scene) and picture degradations."""
from .judge import compare, judge, summarize

__all__ = ["judge", "compare", "summarize"]
