"""A recursive-descent parser from answer tokens to sympy objects, over an allow-listed grammar.

Nothing here hands text to ``eval``, ``sympify`` or ``parse_expr``: every sympy object is built
by a constructor call chosen by the grammar (numbers, single-letter symbols, + - * / ^, an
allow-list of functions and constants, tuples, sets, intervals, matrices, relations). Costly
operations go through :mod:`grpo_env_math.safe`, which estimates their size first.

Grammar (top down)::

    answer   := item (("," | ";" | "and" | "or") item)*
    item     := value (relop value)*          -- x = 3, 1 < x < 2, x \\in [0, 1]
    value    := bracketed list / interval | \\{ set \\} | matrix | expr  (joined by \\cup)
    expr     := term (("+" | "-" | "\\pm") term)*
    term     := unary (("*" | "/" | "\\cdot" | "\\times" | "\\div" | implicit) unary)*
    unary    := ("-" | "+") unary | power
    power    := postfix ("^" exponent)?
    postfix  := primary ("!" | "%")*
"""

from __future__ import annotations

import sympy

from grpo_env_math import safe
from grpo_env_math.guards import Refused, reject, unparsable
from grpo_env_math.lexer import FUNCTION_WORDS, Tok, tokenize
from grpo_env_math.values import Interval, Matrix, Relation, Scalar, Seq, Union_, Value

MAX_DEPTH = 60
MAX_MATRIX = 12
_RELATIONS = {"=": "=", "<": "<", ">": ">", "le": "<=", "leq": "<=", "leqslant": "<=", "ge": ">=",
              "geq": ">=", "geqslant": ">=", "ne": "!=", "neq": "!="}
_MUL_CMDS = {"cdot", "times", "ast"}
_GREEK = {"alpha", "beta", "gamma", "delta", "theta", "phi", "varphi", "lambda", "mu", "sigma", "omega",
          "tau", "rho", "psi", "epsilon", "varepsilon", "eta", "kappa", "nu", "xi", "zeta", "chi"}
_CLOSERS = {")", "]", "}", "\\}", "|", "&", "\\\\"}
_MATRIX_ENVS = {"pmatrix", "bmatrix", "matrix", "Bmatrix", "vmatrix", "smallmatrix", "array"}


def _infinite(e: sympy.Expr) -> bool:
    """Whether an interval end is, or holds, an infinity (``\\infty``, ``-\\infty``, ``2\\infty``)."""
    return e.has(sympy.oo, -sympy.oo, sympy.zoo)


def _sym(name: str) -> sympy.Symbol:
    # every model symbol is declared the same way, so gold and answer symbols compare equal
    return sympy.Symbol(name)


class Parser:
    def __init__(self, toks: list[Tok]):
        self.toks = toks
        self.i = 0
        self.depth = 0
        self.percent_span: tuple[int, int] | None = None  # tokens of the last value a % applied to

    # ---- token helpers -------------------------------------------------------------------------
    def peek(self, k: int = 0) -> Tok | None:
        j = self.i + k
        return self.toks[j] if j < len(self.toks) else None

    def at(self, kind: str, *texts: str, k: int = 0) -> bool:
        t = self.peek(k)
        return t is not None and t.kind == kind and (not texts or t.text in texts)

    def take(self) -> Tok:
        t = self.peek()
        if t is None:
            raise unparsable("answer ends too early")
        self.i += 1
        return t

    def expect(self, kind: str, text: str) -> None:
        t = self.peek()
        if t is None or t.kind != kind or t.text != text:
            raise unparsable(f"expected {text!r}, found {t.text if t else 'the end'!r}")
        self.i += 1

    def enter(self) -> None:
        self.depth += 1
        if self.depth > MAX_DEPTH:
            raise reject(f"expression nests more than {MAX_DEPTH} levels")

    # ---- answer level --------------------------------------------------------------------------
    def answer(self) -> Value:
        items = [self.item()]
        hedge = False
        while self.at("op", ",", ";") or self.at("word", "and", "or"):
            hedge |= self.take().text == "or"
            if self.peek() is None:
                break  # "18," : a trailing separator
            items.append(self.item())
        if self.peek() is not None:
            raise unparsable(f"unexpected {self.peek().text!r}")
        flat: list[Value] = []
        for it in items:  # "1 \pm 2, 5" -> three answers
            flat.extend(it.items if isinstance(it, Seq) and it.kind == "pm" else [it])
        if len(flat) == 1:
            return flat[0]
        return Seq("hedge" if hedge else "list", tuple(flat))

    def item(self) -> Value:
        first = self.value()
        parts: list[tuple[str, Value]] = []
        while True:
            op = self._relop()
            if op is None:
                break
            if op == "in":
                # "x \in [1, 2]": the membership names the set; the set is the answer, and a pair
                # after it, "x \in (1, 2)", is an open interval, not a point
                v = self.value()
                if isinstance(v, Seq) and v.kind == "tuple" and len(v.items) == 2:
                    return self._as_interval(v)
                return v
            parts.append((op, self.value()))
        if not parts:
            return self._expand_pm(first)
        if len(parts) == 2 and all(isinstance(v, Scalar) for v in (first, parts[0][1], parts[1][1])):
            return self._chain(first, parts)
        if len(parts) > 1:
            raise unparsable("too many relations in one answer")
        op, rhs = parts[0]
        if not isinstance(first, Scalar) or not isinstance(rhs, Scalar):
            if op == "=" and isinstance(first, Scalar) and first.expr.is_Symbol:
                return rhs  # "x = (1, 2)": the value named
            raise unparsable("a relation between non-numbers")
        rel = Relation(op, first.expr, rhs.expr)
        if safe.PM in rel.rhs.free_symbols:
            return Seq("pm", tuple(Relation(op, first.expr, rel.rhs.subs(safe.PM, s)) for s in (1, -1)))
        return rel

    def _relop(self) -> str | None:
        t = self.peek()
        if t is None:
            return None
        if t.kind == "op" and t.text in ("=", "<", ">"):
            self.i += 1
            return t.text
        if t.kind == "cmd" and t.text in _RELATIONS:
            self.i += 1
            return _RELATIONS[t.text]
        if t.kind == "cmd" and t.text == "in":
            self.i += 1
            return "in"
        return None

    @staticmethod
    def _chain(first: Scalar, parts) -> Value:
        """``a < x <= b`` as the interval it describes."""
        (op1, mid), (op2, hi) = parts
        if not mid.expr.is_Symbol or op1 not in ("<", "<=") or op2 not in ("<", "<="):
            if mid.expr.is_Symbol and op1 in (">", ">=") and op2 in (">", ">="):
                return Interval(hi.expr, first.expr, op2 == ">", op1 == ">")
            raise unparsable("unsupported chain of relations")
        return Interval(first.expr, hi.expr, op1 == "<", op2 == "<")

    @staticmethod
    def _expand_pm(v: Value) -> Value:
        if isinstance(v, Scalar) and safe.PM in v.expr.free_symbols:
            return Seq("pm", tuple(Scalar(v.expr.subs(safe.PM, s), v.percent) for s in (1, -1)))
        return v

    # ---- values: bracketed lists, intervals, sets, matrices, expressions ------------------------
    def value(self) -> Value:
        self.enter()
        try:
            first = self._single_value()
            if not self.at("cmd", "cup"):
                return first
            parts = [self._as_interval(first)]
            while self.at("cmd", "cup"):
                self.take()
                parts.append(self._as_interval(self._single_value()))
            return Union_(tuple(parts))
        finally:
            self.depth -= 1

    @staticmethod
    def _as_interval(v: Value) -> Interval:
        if isinstance(v, Interval):
            return v
        if isinstance(v, Seq) and v.kind == "tuple" and len(v.items) == 2:
            lo, hi = v.items
            if isinstance(lo, Scalar) and isinstance(hi, Scalar):
                return Interval(lo.expr, hi.expr, True, True)
        raise unparsable("\\cup joins intervals only")

    def _single_value(self) -> Value:
        if self.at("op", "(", "[") and self._has_top_comma():
            return self._bracket_list()
        if self.at("op", "\\{"):
            return self._set()
        if self.at("cmd", "emptyset", "varnothing"):
            self.take()
            return Seq("set", ())
        if self.at("cmd", "begin"):
            return self._matrix()
        start = self.i
        e = self.expr()
        # the value is a percentage only when the % closes all of it: "50\%", "-50\%"; in
        # "3 + 0\%" it is one term's value (/100), not a claim about the answer
        whole = self.percent_span is not None and self.percent_span[1] == self.i and (
            self.percent_span[0] == start or (self.percent_span[0] == start + 1 and self.toks[start].text in ("+", "-")))
        return Scalar(e, whole)

    def _has_top_comma(self) -> bool:
        """Whether the bracket group starting here holds a comma at its own level."""
        depth = 0
        for t in self.toks[self.i :]:
            if t.kind == "op" and t.text in ("(", "[", "{", "\\{"):
                depth += 1
            elif t.kind == "op" and t.text in (")", "]", "}", "\\}"):
                depth -= 1
                if depth == 0:
                    return False
            elif depth == 1 and t.kind == "op" and t.text == ",":
                return True
        return False

    def _items_until(self, closers: tuple[str, ...]) -> list[Value]:
        items = [self.item()]
        while self.at("op", ","):
            self.take()
            items.append(self.item())
        if not self.at("op", *closers):
            raise unparsable(f"expected one of {closers}")
        return items

    def _bracket_list(self) -> Value:
        open_ = self.take().text
        items = self._items_until((")", "]"))
        close = self.take().text
        if len(items) == 2 and (open_ == "[" or close == "]"):
            lo, hi = items
            if not (isinstance(lo, Scalar) and isinstance(hi, Scalar)):
                raise unparsable("interval ends must be numbers")
            # an infinite end is open: [3, \infty] is malformed, not a way to write [3, \infty)
            if (open_ == "[" and _infinite(lo.expr)) or (close == "]" and _infinite(hi.expr)):
                raise unparsable("a closed bracket at an infinite end")
            return Interval(lo.expr, hi.expr, open_ == "(", close == ")")
        if open_ != "(" or close != ")":
            if open_ == "[" and close == "]":
                return Seq("tuple", tuple(items))
            raise unparsable("mismatched brackets")
        return Seq("tuple", tuple(items))

    def _set(self) -> Value:
        self.take()
        if self.at("op", "\\}"):
            self.take()
            return Seq("set", ())
        items = self._items_until(("\\}",))
        self.take()
        return Seq("set", tuple(items))

    def _env_name(self) -> str:
        self.expect("op", "{")
        name = ""
        while not self.at("op", "}"):
            name += self.take().text
        self.take()
        return name

    def _matrix(self) -> Value:
        self.take()
        env = self._env_name()
        if env not in _MATRIX_ENVS:
            raise unparsable(f"unsupported environment {env!r}")
        if env == "array" and self.at("op", "{"):
            self._env_name()  # the column spec, e.g. {cc}
        rows: list[list[sympy.Expr]] = [[]]
        while True:
            if self.at("cmd", "end"):
                self.take()
                if self._env_name() != env:
                    raise unparsable("mismatched \\end")
                break
            rows[-1].append(self.expr())
            if self.at("op", "&"):
                self.take()
            elif self.at("op", "\\\\"):
                self.take()
                rows.append([])
            elif not self.at("cmd", "end"):
                raise unparsable("unexpected token in a matrix")
            if len(rows) > MAX_MATRIX or len(rows[-1]) > MAX_MATRIX:
                raise reject("matrix is too large")
        if rows and not rows[-1]:
            rows.pop()  # a trailing \\ before \end
        if not rows or len({len(r) for r in rows}) != 1:
            raise unparsable("ragged or empty matrix")
        return Matrix(tuple(tuple(r) for r in rows))

    # ---- expressions ---------------------------------------------------------------------------
    def expr(self) -> sympy.Expr:
        self.enter()
        try:
            value = self.term()
            while True:
                if self.at("op", "+"):
                    self.take()
                    value = value + self.term()
                elif self.at("op", "-"):
                    self.take()
                    value = value - self.term()
                elif self.at("cmd", "pm", "mp"):
                    sign = safe.PM if self.take().text == "pm" else -safe.PM
                    value = value + sign * self.term()
                else:
                    return value
        finally:
            self.depth -= 1

    def _starts_factor(self) -> bool:
        t = self.peek()
        if t is None:
            return False
        if t.kind in ("num", "letter"):
            return True
        if t.kind == "word":
            return t.text not in ("or", "and")
        if t.kind == "cmd":
            return t.text in ("frac", "sqrt", "pi", "infty", "binom") or t.text in safe.FUNCTION_NAMES \
                or t.text in _GREEK
        return t.kind == "op" and t.text in ("(", "{")

    def term(self) -> sympy.Expr:
        value = self.unary()
        while True:
            if self.at("op", "*") or self.at("cmd", *_MUL_CMDS):
                self.take()
                value = value * self.unary()
            elif self.at("op", "/") or self.at("cmd", "div"):
                self.take()
                value = value / self.unary()
            elif self.at("unit"):
                self._skip_unit()
            elif self._starts_factor():
                if self.at("num") and self.i > 0 and self.toks[self.i - 1].kind == "num":
                    raise unparsable("two numbers side by side")
                value = value * self.power()
            else:
                return value

    def _skip_unit(self) -> None:
        """Drop a unit word (``18 \\text{ dollars}``, ``5 cm^2``) where an item may end."""
        self.take()
        if self.at("op", "^") and (self.at("num", k=1) or self.at("op", "{", k=1)):
            self.take()
            self.primary()
        t = self.peek()
        if t is None or t.kind == "unit" or (t.kind == "op" and t.text in (",", ";", "=", *_CLOSERS)) \
                or (t.kind == "word" and t.text in ("or", "and")) or (t.kind == "cmd" and t.text in _RELATIONS):
            return
        raise unparsable("a word inside the answer")

    def unary(self) -> sympy.Expr:
        if self.at("op", "-"):
            self.take()
            self.enter()
            try:
                return -self.unary()
            finally:
                self.depth -= 1
        if self.at("op", "+"):
            self.take()
            return self.unary()
        if self.at("cmd", "pm", "mp"):  # "\pm 3": two answers, expanded by the caller
            self.take()
            return safe.PM * self.unary()
        return self.power()

    def power(self) -> sympy.Expr:
        base = self.postfix()
        if not self.at("op", "^"):
            return base
        self.take()
        if self.at("cmd", "circ"):  # 30^\circ: degrees are the number itself
            self.take()
            return base
        if self.at("op", "{") and self.at("cmd", "circ", k=1) and self.at("op", "}", k=2):
            self.i += 3
            return base
        self.enter()
        try:
            exp = self._exponent()
        finally:
            self.depth -= 1
        return safe.power(base, exp)

    def _exponent(self) -> sympy.Expr:
        if self.at("op", "-"):
            self.take()
            return -self._exponent()
        if self.at("op", "+"):
            self.take()
        base = self.postfix()
        if self.at("op", "^"):  # plain notation 2^3^2 = 2^(3^2)
            self.take()
            return safe.power(base, self._exponent())
        return base

    def postfix(self) -> sympy.Expr:
        start = self.i
        value = self.primary()
        while True:
            if self.at("op", "!"):
                self.take()
                value = safe.factorial(value)
            elif self.at("op", "%") or self.at("word", "percent"):
                self.take()
                self.percent_span = (start, self.i)
                value = value / 100
            else:
                return value

    # ---- primaries -----------------------------------------------------------------------------
    def primary(self) -> sympy.Expr:
        self.enter()
        try:
            return self._primary()
        finally:
            self.depth -= 1

    def _primary(self) -> sympy.Expr:
        t = self.take()
        if t.kind == "num":
            return self._number(t)
        if t.kind == "letter":
            return self._letter(t.text)
        if t.kind == "word":
            return self._word(t.text)
        if t.kind == "cmd":
            return self._command(t.text)
        if t.kind == "op" and t.text in ("(", "[", "{"):
            inner = self.expr()
            self.expect("op", {"(": ")", "[": "]", "{": "}"}[t.text])
            return inner
        if t.kind == "op" and t.text == "|":
            inner = self.expr()
            self.expect("op", "|")
            return sympy.Abs(inner)
        raise unparsable(f"unexpected {t.text!r}")

    def _number(self, t: Tok) -> sympy.Expr:
        value = safe.literal(t.text)
        integer = "." not in t.text and "e" not in t.text.lower()
        # mixed numbers: 2\frac{1}{2} and "2 1/2"
        if integer and self.at("cmd", "frac") and self._numeric_frac_ahead():
            return value + self._command(self.take().text)
        if integer and self.at("num", k=0) and self.peek().space and self.at("op", "/", k=1) and self.at("num", k=2):
            num = self.take()
            self.take()  # the "/"
            den = self.take()
            if "." in num.text or "." in den.text or int(den.text) == 0:
                raise unparsable("malformed mixed number")
            return value + sympy.Rational(int(num.text), int(den.text))
        return value

    def _numeric_frac_ahead(self) -> bool:
        ahead = self.toks[self.i + 1 : self.i + 7]
        kinds = [(t.kind, t.text) for t in ahead]
        if len(kinds) >= 6 and kinds[0] == ("op", "{") and kinds[1][0] == "num" and kinds[2] == ("op", "}") \
                and kinds[3] == ("op", "{") and kinds[4][0] == "num" and kinds[5] == ("op", "}"):
            return True
        return bool(kinds) and kinds[0][0] == "num" and len(kinds[0][1]) == 2 and kinds[0][1].isdigit()

    def _letter(self, name: str) -> sympy.Expr:
        if self.at("op", "_"):
            self.take()
            sub = self._subscript()
            return _sym(f"{name}_{sub}")
        if name == "e":
            return sympy.E
        if name == "i":
            return sympy.I
        return _sym(name)

    def _subscript(self) -> str:
        if self.at("op", "{"):
            self.take()
            parts = []
            while not self.at("op", "}"):
                t = self.take()
                if t.kind not in ("num", "letter") or len(parts) > 3:
                    raise unparsable("unsupported subscript")
                parts.append(t.text)
            self.take()
            return "".join(parts)
        t = self.take()
        if t.kind not in ("num", "letter"):
            raise unparsable("unsupported subscript")
        return t.text[0] if t.kind == "num" else t.text

    def _word(self, word: str) -> sympy.Expr:
        if word == "pi":
            return sympy.pi
        if word in ("inf", "infty", "infinity", "oo"):
            return sympy.oo
        if word in FUNCTION_WORDS:
            return self._apply(word)
        raise unparsable(f"unexpected word {word!r}")

    def _command(self, name: str) -> sympy.Expr:
        if name == "pi":
            return sympy.pi
        if name == "infty":
            return sympy.oo
        if name in _GREEK:
            return _sym(name)
        if name == "frac":
            num = self._arg()
            den = self._arg()
            return num / den
        if name == "binom":
            n, k = self._arg(), self._arg()
            if not (n.is_Integer and k.is_Integer) or n > safe.MAX_FACTORIAL:
                raise reject("binomial too large or not of integers")
            return sympy.binomial(n, k)
        if name == "sqrt":
            if self.at("op", "["):
                self.take()
                index = self.expr()
                self.expect("op", "]")
                return safe.power(self._arg(), 1 / index)
            return safe.function("sqrt", self._arg())
        if name in safe.FUNCTION_NAMES:
            return self._apply(name)
        raise unparsable(f"unsupported command \\{name}")

    def _arg(self) -> sympy.Expr:
        """A LaTeX argument: ``{...}``, or one character/command (``\\frac34``, ``\\sqrt2``)."""
        if self.at("op", "{"):
            self.take()
            inner = self.expr()
            self.expect("op", "}")
            return inner
        t = self.peek()
        if t is not None and t.kind == "num" and len(t.text) > 1:
            # \frac34: the first digit is this argument, the rest is the next token
            self.toks[self.i] = Tok("num", t.text[1:])
            return sympy.Integer(int(t.text[0]))
        if t is not None and t.kind in ("num", "letter", "cmd"):
            return self.primary()
        raise unparsable("missing argument")

    def _apply(self, name: str) -> sympy.Expr:
        """A function applied to its argument: ``\\sin x``, ``\\sin^2(x)``, ``\\log_2 8``, ``ln(x)``."""
        base = None
        if name in ("log", "ln") and self.at("op", "_"):
            self.take()
            base = self._arg()
        power = None
        if self.at("op", "^"):
            self.take()
            power = self._arg()
        if self.at("op", "(", "{", "["):
            close = {"(": ")", "{": "}", "[": "]"}[self.take().text]
            arg = self.expr()
            self.expect("op", close)
        else:
            arg = self.power()
        value = safe.function(name, arg, base)
        return safe.power(value, power) if power is not None else value


def parse(text: str, *, thousands: bool = True) -> Value:
    """The value of an answer, or :class:`Refused` (``unparsable``/``rejected``) with the reason."""
    toks = tokenize(text, thousands=thousands)
    if not toks:
        raise unparsable("empty answer")
    try:
        return Parser(toks).answer()
    except Refused:
        raise
    except RecursionError:
        raise reject("expression nests too deeply") from None
    except (ValueError, TypeError, ZeroDivisionError, ArithmeticError, AttributeError) as e:
        # sympy refusing an operation on parsed objects (e.g. adding a set): not an answer
        raise unparsable(f"cannot build the expression: {type(e).__name__}") from None
