import pytest

from textkit import evaluate
from textkit.calc import tokenize


def test_tokenize():
    assert tokenize("1 + 2.5*(3)") == [1, "+", 2.5, "*", "(", 3, ")"]


@pytest.mark.parametrize("expr,value", [
    ("1 + 2", 3), ("2 * 3 + 4", 10), ("2 + 3 * 4", 14), ("(2 + 3) * 4", 20),
    ("10 - 4 - 3", 3), ("12 / 4 / 3", 1.0), ("2 ** 3 ** 2", 512), ("-2 ** 2", -4),
    ("--3", 3), ("+4", 4), ("1.5 * 2", 3.0), (" 7 ", 7),
])
def test_evaluate(expr, value):
    assert evaluate(expr) == value


def test_division_by_zero():
    with pytest.raises(ZeroDivisionError):
        evaluate("1 / (2 - 2)")


@pytest.mark.parametrize("expr", ["1 +", "(1 + 2", "1 2", "2 $ 3", ")"])
def test_syntax_errors(expr):
    with pytest.raises(SyntaxError):
        evaluate(expr)
