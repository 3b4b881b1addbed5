import pytest

from textkit import merge_intervals, total_length


def test_merge_overlapping():
    assert merge_intervals([(1, 3), (2, 6), (8, 10)]) == [(1, 6), (8, 10)]


def test_merge_touching():
    assert merge_intervals([(1, 2), (2, 4)]) == [(1, 4)]


def test_merge_contained_and_unsorted():
    assert merge_intervals([(5, 6), (1, 10), (2, 3)]) == [(1, 10)]


def test_merge_empty():
    assert merge_intervals([]) == []


def test_merge_rejects_reversed():
    with pytest.raises(ValueError):
        merge_intervals([(3, 1)])


def test_total_length():
    assert total_length([(0, 2), (1, 3), (10, 11)]) == 4
