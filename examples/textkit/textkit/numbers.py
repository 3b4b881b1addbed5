"""Number helpers."""

_ROMAN = [
    (1000, "M"), (900, "CM"), (500, "D"), (400, "CD"),
    (100, "C"), (90, "XC"), (50, "L"), (40, "XL"),
    (10, "X"), (9, "IX"), (5, "V"), (4, "IV"), (1, "I"),
]


def to_roman(number):
    """Roman numeral of an integer in 1..3999."""
    if not isinstance(number, int) or number < 1 or number > 3999:
        raise ValueError("number must be an integer in 1..3999")
    parts = []
    for value, symbol in _ROMAN:
        while number >= value:
            parts.append(symbol)
            number -= value
    return "".join(parts)


def from_roman(numeral):
    """Integer value of a Roman numeral (validated by round trip)."""
    values = {"I": 1, "V": 5, "X": 10, "L": 50, "C": 100, "D": 500, "M": 1000}
    total = 0
    previous = 0
    for char in reversed(numeral.upper()):
        if char not in values:
            raise ValueError("invalid numeral: %r" % numeral)
        value = values[char]
        if value < previous:
            total -= value
        else:
            total += value
            previous = value
    if total < 1 or to_roman(total) != numeral.upper():
        raise ValueError("invalid numeral: %r" % numeral)
    return total


def clamp(value, low, high):
    """`value` limited to [low, high]."""
    if low > high:
        raise ValueError("low must not exceed high")
    return max(low, min(value, high))


def mean(values):
    """Arithmetic mean of a non-empty sequence."""
    values = list(values)
    if not values:
        raise ValueError("mean of an empty sequence")
    return sum(values) / len(values)


def median(values):
    """Median of a non-empty sequence (mean of the two middle values for even lengths)."""
    ordered = sorted(values)
    n = len(ordered)
    if n == 0:
        raise ValueError("median of an empty sequence")
    middle = n // 2
    if n % 2 == 1:
        return ordered[middle]
    return (ordered[middle - 1] + ordered[middle]) / 2
