"""Closed intervals [start, end]."""


def merge_intervals(intervals):
    """Merge overlapping or touching intervals; result sorted by start."""
    result = []
    for start, end in sorted(intervals):
        if start > end:
            raise ValueError("interval start after end: %r" % ((start, end),))
        if result and start <= result[-1][1]:
            last_start, last_end = result[-1]
            result[-1] = (last_start, max(last_end, end))
        else:
            result.append((start, end))
    return result


def total_length(intervals):
    """Length covered by the union of the intervals."""
    return sum(end - start for start, end in merge_intervals(intervals))
