"""Small text and number utilities."""
from .text import slugify, wrap, word_counts, is_palindrome
from .numbers import to_roman, from_roman, clamp, mean, median
from .intervals import merge_intervals, total_length
from .calc import evaluate

__all__ = [
    "slugify", "wrap", "word_counts", "is_palindrome",
    "to_roman", "from_roman", "clamp", "mean", "median",
    "merge_intervals", "total_length", "evaluate",
]
