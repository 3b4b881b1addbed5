"""A small arithmetic expression evaluator: + - * / ** and parentheses, integers and floats."""
import re

_TOKEN = re.compile(r"\s*(?:(\d+\.\d*|\d*\.\d+|\d+)|(\*\*|[-+*/()]))")


def tokenize(text):
    """Numbers and operators of `text`."""
    tokens = []
    pos = 0
    text = text.rstrip()
    while pos < len(text):
        match = _TOKEN.match(text, pos)
        if not match:
            raise SyntaxError("unexpected character at %d" % pos)
        number, op = match.groups()
        if number is not None:
            tokens.append(float(number) if "." in number else int(number))
        else:
            tokens.append(op)
        pos = match.end()
    return tokens


class _Parser:
    def __init__(self, tokens):
        self.tokens = tokens
        self.pos = 0

    def peek(self):
        return self.tokens[self.pos] if self.pos < len(self.tokens) else None

    def take(self):
        token = self.peek()
        self.pos += 1
        return token

    def expression(self):
        value = self.term()
        while self.peek() in ("+", "-"):
            if self.take() == "+":
                value = value + self.term()
            else:
                value = value - self.term()
        return value

    def term(self):
        value = self.unary()
        while self.peek() in ("*", "/"):
            if self.take() == "*":
                value = value * self.unary()
            else:
                divisor = self.unary()
                if divisor == 0:
                    raise ZeroDivisionError("division by zero")
                value = value / divisor
        return value

    def unary(self):
        if self.peek() == "-":
            self.take()
            return -self.unary()
        if self.peek() == "+":
            self.take()
            return self.unary()
        return self.power()

    def power(self):
        base = self.atom()
        if self.peek() == "**":
            self.take()
            return base ** self.unary()
        return base

    def atom(self):
        token = self.take()
        if token == "(":
            value = self.expression()
            if self.take() != ")":
                raise SyntaxError("missing )")
            return value
        if isinstance(token, (int, float)):
            return token
        raise SyntaxError("unexpected token %r" % (token,))


def evaluate(text):
    """Value of an arithmetic expression."""
    parser = _Parser(tokenize(text))
    value = parser.expression()
    if parser.peek() is not None:
        raise SyntaxError("unexpected token %r" % (parser.peek(),))
    return value
