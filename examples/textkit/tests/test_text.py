import pytest

from textkit import slugify, wrap, word_counts, is_palindrome


def test_slugify_basic():
    assert slugify("Hello, World!") == "hello-world"


def test_slugify_accents_and_separator():
    assert slugify("Crème Brûlée  recipe", separator="_") == "creme_brulee_recipe"


def test_slugify_max_length():
    assert slugify("one two three", max_length=7) == "one-two"


def test_slugify_empty():
    assert slugify("!!!") == ""


def test_wrap_lines():
    assert wrap("the quick brown fox jumps", 10) == ["the quick", "brown fox", "jumps"]


def test_wrap_exact_width():
    assert wrap("ab cd", 5) == ["ab cd"]


def test_wrap_long_word():
    assert wrap("a extraordinarily b", 5) == ["a", "extraordinarily", "b"]


def test_wrap_rejects_zero_width():
    with pytest.raises(ValueError):
        wrap("x", 0)


def test_word_counts_order_and_case():
    order, counts = word_counts("b a B c a b")
    assert order == ["b", "a", "c"]
    assert counts == {"b": 3, "a": 2, "c": 1}


def test_word_counts_case_sensitive():
    order, counts = word_counts("A a", ignore_case=False)
    assert order == ["A", "a"]
    assert counts["A"] == 1


@pytest.mark.parametrize("text", ["racecar", "A man, a plan, a canal: Panama", "", "x"])
def test_palindromes(text):
    assert is_palindrome(text)


@pytest.mark.parametrize("text", ["ab", "palindrome", "abca"])
def test_not_palindromes(text):
    assert not is_palindrome(text)
