"""language/301/agents' tools: what an agent may call, each a function from a text argument to a
text observation.

- calculator[expression]: arithmetic, parsed by `ast` and evaluated node by node. Only numbers,
  + − × ÷ // % **, brackets and round/abs pass: no names, no attributes, no calls of anything
  else, so `__import__('os')` is refused without ever being run. Powers and results are bounded
  (a 10**10**10 would take the machine's memory). `eval` is never called.
- search[query]: BM25 (`deepscape.retrieval.SparseIndex`) over the Factbook passages that
  language/201/augmented-search builds, cut small (`words` words) so the best one fits in an
  observation.
- lookup[country]: a country's Factbook fields, one line: capital, population, area, region
  and the countries it borders (read from the Factbook's JSON here: `data.factbook` keeps no
  borders).
- python[code]: the code run in the sandbox (`l301_agents_sandbox`); what it prints comes back.
- finish[answer]: not a tool: the agent's answer, which ends the episode.

Every tool answers, never raises: a bad argument comes back as "Error: …", an observation the
agent can read and correct itself from.
"""

from __future__ import annotations

import ast
import difflib
import functools
import json
import math
import operator
import re
from collections.abc import Callable
from dataclasses import dataclass

from deepscape.data.factbook import countries, folder
from deepscape.labs.language.l301_agents_sandbox import Sandbox

TOOLS = ("calculator", "search", "lookup", "python")
FINISH = "finish"


# -- the calculator -------------------------------------------------------------------------------
class Refused(ValueError):
    """An expression the calculator will not compute, and why."""


OPERATORS: dict[type, Callable] = {
    ast.Add: operator.add, ast.Sub: operator.sub, ast.Mult: operator.mul,
    ast.Div: operator.truediv, ast.FloorDiv: operator.floordiv, ast.Mod: operator.mod,
    ast.Pow: operator.pow,
}  # fmt: skip
UNARY: dict[type, Callable] = {ast.USub: operator.neg, ast.UAdd: operator.pos}
FUNCTIONS: dict[str, Callable] = {"round": round, "abs": abs}
LARGEST = 10**30  # bigger numbers are refused: no answer here needs them
GROUPED = re.compile(r"\b\d{1,3}(?:,\d{3})+(?:\.\d+)?\b")  # 10,223,150 — as the Factbook writes


def calculate(expression: str) -> int | float:
    """The value of an arithmetic `expression`; Refused names what is not allowed. Thousands
    separators are read as such ("10,223,150 + 1")."""
    text = GROUPED.sub(lambda m: m.group().replace(",", ""), expression.strip())
    text = text.replace("×", "*").replace("÷", "/").replace("^", "**")
    try:
        tree = ast.parse(text, mode="eval")
    except SyntaxError:
        raise Refused(f"cannot parse {expression!r}: write numbers and + - * / ** ( )") from None
    return _value(tree.body)


def _value(node: ast.AST) -> int | float:
    if isinstance(node, ast.Constant) and type(node.value) in (int, float):
        return _bounded(node.value)
    if isinstance(node, ast.BinOp) and type(node.op) in OPERATORS:
        left, right = _value(node.left), _value(node.right)
        if isinstance(node.op, ast.Pow) and (abs(right) > 64 or abs(left) > 10**6):
            raise Refused(f"the power {left} ** {right} is too large (exponents up to 64)")
        try:
            return _bounded(OPERATORS[type(node.op)](left, right))
        except ZeroDivisionError:
            raise Refused("division by zero") from None
    if isinstance(node, ast.UnaryOp) and type(node.op) in UNARY:
        return UNARY[type(node.op)](_value(node.operand))
    if (isinstance(node, ast.Call) and isinstance(node.func, ast.Name)
            and node.func.id in FUNCTIONS and not node.keywords
            and len(node.args) <= 2):  # fmt: skip
        args = [_value(a) for a in node.args]
        if node.func.id == "round" and len(args) == 2:
            args[1] = int(args[1])
        return _bounded(FUNCTIONS[node.func.id](*args))
    raise Refused(f"{_name(node)} is not allowed: only numbers, + - * / // % **, brackets, "
                  "round and abs")  # fmt: skip


def _bounded(value: int | float | complex) -> int | float:
    if isinstance(value, complex) or (isinstance(value, float) and not math.isfinite(value)):
        raise Refused(f"the result {value} is not a real number")
    if abs(value) > LARGEST:
        raise Refused("the result is larger than 10**30")
    return value


def _name(node: ast.AST) -> str:
    if isinstance(node, ast.Attribute):
        return f"attribute access (.{node.attr})"
    if isinstance(node, ast.Call):
        return f"calling {ast.unparse(node.func)}"
    if isinstance(node, ast.Name):
        return f"the name {node.id!r}"
    return type(node).__name__


def show_number(value: int | float) -> str:
    """A result as an agent reads it: integers whole, other numbers to 6 significant digits."""
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    return str(value) if isinstance(value, int) else f"{value:.6g}"


def calculator(expression: str) -> str:
    try:
        return show_number(calculate(expression))
    except Refused as error:
        return f"Error: {error}"


# -- the Factbook ---------------------------------------------------------------------------------
@dataclass(frozen=True)
class Record:
    """A country's fields as `lookup` shows them (population as a number, for the tasks)."""

    name: str
    code: str
    region: str
    capital: str  # the Factbook's spelling ("" when not one plain name)
    capitals: tuple[str, ...]  # every accepted spelling
    population: int  # 0 when unknown
    area: str
    borders: tuple[str, ...]  # names of the countries it borders that the Factbook has
    internet_code: str  # ".pt" ("" unknown)

    def line(self) -> str:
        parts = [f"capital {self.capital or 'unknown'}",
                 f"population {self.population:,}" if self.population else "population unknown",
                 f"area {self.area or 'unknown'}", f"region {self.region.replace('-', ' ')}",
                 f"borders {', '.join(self.borders) if self.borders else 'none'}"]  # fmt: skip
        return f"{self.name}: " + "; ".join(parts)


@functools.cache
def records() -> dict[str, Record]:
    """Every Factbook country by lower-case name, its borders and internet code read from the
    Factbook's JSON (border names that are no country's name here are dropped)."""
    names = {c.name for c in countries()}
    out = {}
    for c in countries():
        entry = json.loads((folder() / c.region / f"{c.code}.json").read_text("utf-8"))
        geography, communications = entry.get("Geography", {}), entry.get("Communications", {})
        text = geography.get("Land boundaries", {}).get("border countries", {}).get("text", "")
        borders = []
        for part in re.split(r";\s*", re.sub(r"<[^>]+>", " ", text)):
            match = re.match(r"\s*(.+?)\s+[\d,.]+\s*km", part)
            if match and match.group(1).strip() in names:
                borders.append(match.group(1).strip())
        code = communications.get("Internet country code", {}).get("text", "").strip()
        population = int(c.population.replace(",", "")) if c.population else 0
        out[c.name.lower()] = Record(
            c.name, c.code, c.region, c.capital[0] if c.capital else "", c.capital,
            population, c.area, tuple(borders), code if re.fullmatch(r"\.[a-z]{2}", code) else "",
        )  # fmt: skip
    return out


@functools.cache
def aliases() -> dict[str, Record]:
    """Countries by the parts of a name with brackets: Falkland Islands (Islas Malvinas) is
    also Falkland Islands and Islas Malvinas."""
    out = {}
    for key, record in records().items():
        match = re.fullmatch(r"(.+?)\s*\((.+)\)", key)
        if match:
            out.setdefault(match.group(1), record)
            out.setdefault(match.group(2), record)
    return out


def lookup(country: str) -> str:
    key = country.strip().strip("'\"").lower()
    found = records().get(key) or aliases().get(key)
    if found is None:
        close = difflib.get_close_matches(key, list(records()), n=1, cutoff=0.75)
        hint = f": did you mean {records()[close[0]].name}?" if close else ""
        return f"Error: no country named {country.strip()!r} in the Factbook{hint}"
    return found.line()


# -- search ---------------------------------------------------------------------------------------
class Search:
    """BM25 over the Factbook passages of language/201/augmented-search, `words` words each."""

    def __init__(self, words: int = 30):
        from deepscape.labs.language.l201_augmented_search_data import factbook
        from deepscape.retrieval import SparseIndex

        self.passages = [p.text for p in factbook("sentences", words, 0).passages]
        self.index = SparseIndex.build(self.passages)

    def __call__(self, query: str, limit: int = 300) -> str:
        if not query.strip():
            return "Error: give words to search for"
        found, _ = self.index.search([query], 1)
        return self.passages[int(found[0][0])][:limit]


@dataclass
class Tools:
    """The tools an episode may call, by name; `call` never raises."""

    search: Callable[[str], str]
    sandbox: Sandbox

    def call(self, name: str, argument: str) -> str:
        if name == "calculator":
            return calculator(argument)
        if name == "lookup":
            return lookup(argument)
        if name == "search":
            return self.search(argument)
        if name == "python":
            return self.sandbox.run(python_code(argument)).observation()
        return f"Error: no tool named {name!r}: the tools are {', '.join(TOOLS)}"


def python_code(argument: str) -> str:
    """An action's code as the sandbox runs it: a written "\\n" is a new line, and a bare
    expression is printed."""
    code = argument.strip().replace("\\n", "\n")
    try:
        tree = ast.parse(code)
    except SyntaxError:
        return code  # the sandbox reports the error
    if (
        len(tree.body) == 1
        and isinstance(tree.body[0], ast.Expr)
        and not (
            isinstance(tree.body[0].value, ast.Call)
            and getattr(tree.body[0].value.func, "id", "") == "print"
        )
    ):
        return f"print({code})"
    return code
