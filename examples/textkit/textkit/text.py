"""Text helpers."""
import re
import unicodedata


def slugify(text, separator="-", max_length=None):
    """Lower-case ASCII slug of `text`: runs of other characters become one separator."""
    normalized = unicodedata.normalize("NFKD", text)
    ascii_text = normalized.encode("ascii", "ignore").decode("ascii").lower()
    words = [w for w in re.split(r"[^a-z0-9]+", ascii_text) if w]
    slug = separator.join(words)
    if max_length is not None and len(slug) > max_length:
        slug = slug[:max_length].rstrip(separator)
    return slug


def wrap(text, width):
    """Greedy word wrap: lines of at most `width` characters (longer words stand alone)."""
    if width <= 0:
        raise ValueError("width must be positive")
    lines = []
    current = ""
    for word in text.split():
        if not current:
            current = word
        elif len(current) + 1 + len(word) <= width:
            current = current + " " + word
        else:
            lines.append(current)
            current = word
    if current:
        lines.append(current)
    return lines


def word_counts(text, ignore_case=True):
    """Occurrences of each word, most frequent first, ties in first-seen order."""
    counts = {}
    order = []
    for word in re.findall(r"[A-Za-z']+", text):
        key = word.lower() if ignore_case else word
        if key not in counts:
            counts[key] = 0
            order.append(key)
        counts[key] += 1
    return sorted(order, key=lambda w: (-counts[w], order.index(w))), counts


def is_palindrome(text):
    """True when the letters and digits of `text` read the same both ways, case ignored."""
    chars = [c.lower() for c in text if c.isalnum()]
    left, right = 0, len(chars) - 1
    while left < right:
        if chars[left] != chars[right]:
            return False
        left += 1
        right -= 1
    return True
