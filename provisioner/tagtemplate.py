"""Tag values as aws-ebs-csi-driver templates: ``{{ .PVCNamespace | field "-" 2 | toUpper }}``.

aws-ebs-csi-driver runs tag values through Go's ``text/template`` with five helpers (docs/tagging.md):
``field delim index str``, ``substring start end str``, ``toUpper str``, ``toLower str`` and
``contains sub str``. StorageClasses, VolumeSnapshotClasses, VolumeAttributesClasses and
``--extra-tags`` in the wild use that, so zonal evaluates the same subset with its own small tokenizer,
parser and evaluator: no ``eval``, no code execution, no attribute lookup on Python objects — a field
is a key of the mapping the caller passes, nothing else.

The language, exactly:

* Text outside ``{{ … }}`` is copied. ``{{-`` / ``-}}`` trim the whitespace before / after the action
  (as in Go); ``{{/* … */}}`` is a comment.
* An action is a pipeline: commands separated by ``|``; each command's value is passed as the LAST
  argument of the next command, which must then be a function.
* A command is a function name followed by operands, or a single operand. Operands: ``.Field``,
  ``"string"`` (Go escapes ``\\\\ \\" \\n \\t \\r``), a raw ```string```, an integer, ``true``/``false``,
  or a parenthesised pipeline.
* Values print as Go prints them: strings as they are, booleans ``true``/``false``, integers in decimal.
* A field the caller did not provide is an error (unknown field); a provided field that is empty
  renders as ``""`` (as with aws-ebs-csi-driver when the sidecar sends no metadata).

What it must not do: grow output beyond ``max_output`` characters, nest parentheses deeper than
:data:`MAX_DEPTH`, call anything but the five helpers, or import anything from zonal (it sits in the
bottom layer; callers turn :class:`TemplateError` into their own error naming the parameter).
"""

from __future__ import annotations

import functools
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

MAX_DEPTH = 16
MAX_OUTPUT = 4096
MAX_INT = 2**31 - 1

Value = str | int | bool


class TemplateError(ValueError):
    """The template does not parse, names an unknown field or function, or fails when evaluated."""


# --- tokens -----------------------------------------------------------------------------------------

_TOKEN = re.compile(
    r"""
    (?P<space>\s+)
  | (?P<field>\.[A-Za-z_][A-Za-z0-9_]*)
  | (?P<string>"(?:[^"\\\n]|\\.)*")
  | (?P<raw>`[^`]*`)
  | (?P<number>-?[0-9]+)
  | (?P<ident>[A-Za-z_][A-Za-z0-9_]*)
  | (?P<pipe>\|)
  | (?P<lparen>\()
  | (?P<rparen>\))
    """,
    re.VERBOSE,
)
_ESCAPES = {"\\": "\\", '"': '"', "n": "\n", "t": "\t", "r": "\r"}


@dataclass(frozen=True)
class _Token:
    kind: str
    text: str


def _tokens(action: str) -> list[_Token]:
    out: list[_Token] = []
    pos = 0
    while pos < len(action):
        match = _TOKEN.match(action, pos)
        if match is None:
            raise TemplateError(f"unexpected {action[pos]!r} in action {{{{{action}}}}}")
        kind = match.lastgroup or ""
        if kind != "space":
            out.append(_Token(kind, match.group()))
        pos = match.end()
    return out


def _unquote(text: str) -> str:
    body = text[1:-1]
    out: list[str] = []
    i = 0
    while i < len(body):
        char = body[i]
        if char == "\\":
            nxt = body[i + 1]
            if nxt not in _ESCAPES:
                raise TemplateError(f"unsupported escape \\{nxt} in {text}")
            out.append(_ESCAPES[nxt])
            i += 2
        else:
            out.append(char)
            i += 1
    return "".join(out)


# --- syntax tree ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Const:
    value: Value


@dataclass(frozen=True)
class _Field:
    name: str


@dataclass(frozen=True)
class _Command:
    function: str  # "" for a bare operand
    operands: tuple[_Node, ...]


@dataclass(frozen=True)
class _Pipeline:
    commands: tuple[_Command, ...]


_Node = _Const | _Field | _Pipeline


class _Parser:
    def __init__(self, tokens: Sequence[_Token], source: str) -> None:
        self.tokens = tokens
        self.pos = 0
        self.source = source

    def _peek(self) -> _Token | None:
        return self.tokens[self.pos] if self.pos < len(self.tokens) else None

    def pipeline(self, depth: int) -> _Pipeline:
        if depth > MAX_DEPTH:
            raise TemplateError(f"parentheses nested deeper than {MAX_DEPTH}")
        commands = [self._command(depth)]
        while (token := self._peek()) is not None and token.kind == "pipe":
            self.pos += 1
            commands.append(self._command(depth))
        return _Pipeline(tuple(commands))

    def _command(self, depth: int) -> _Command:
        token = self._peek()
        if token is None or token.kind in ("pipe", "rparen"):
            raise TemplateError(f"missing value in {{{{{self.source}}}}}")
        function = ""
        if token.kind == "ident" and token.text not in ("true", "false"):
            function = token.text
            if function not in _FUNCTIONS:
                raise TemplateError(
                    f"function {function!r} is not defined (available: {', '.join(sorted(_FUNCTIONS))})"
                )
            self.pos += 1
        operands: list[_Node] = []
        while (token := self._peek()) is not None and token.kind not in ("pipe", "rparen"):
            operands.append(self._operand(depth))
        if not function and len(operands) != 1:
            raise TemplateError(f"{self.source.strip()!r}: only a function takes arguments")
        return _Command(function, tuple(operands))

    def _operand(self, depth: int) -> _Node:
        token = self.tokens[self.pos]
        self.pos += 1
        if token.kind == "field":
            return _Field(token.text[1:])
        if token.kind == "string":
            return _Const(_unquote(token.text))
        if token.kind == "raw":
            return _Const(token.text[1:-1])
        if token.kind == "number":
            number = int(token.text)
            if abs(number) > MAX_INT:
                raise TemplateError(f"number {token.text} is out of range")
            return _Const(number)
        if token.kind == "ident" and token.text in ("true", "false"):
            return _Const(token.text == "true")
        if token.kind == "lparen":
            inner = self.pipeline(depth + 1)
            close = self._peek()
            if close is None or close.kind != "rparen":
                raise TemplateError(f"unclosed '(' in {{{{{self.source}}}}}")
            self.pos += 1
            return inner
        if token.kind == "ident":
            raise TemplateError(f"function {token.text!r} used as an argument; wrap it in parentheses")
        raise TemplateError(f"unexpected {token.text!r} in {{{{{self.source}}}}}")


# --- the five helpers (Go semantics, errors instead of panics) --------------------------------------


def _contains(sub: str, text: str) -> bool:
    return sub in text


def _substring(start: int, end: int, text: str) -> str:
    data = text.encode()
    if start < 0:
        if end < 0 or end > len(data):
            raise TemplateError(f"substring: end {end} is outside 0..{len(data)}")
        piece = data[:end]
    elif end < 0 or end > len(data):
        if start > len(data):
            raise TemplateError(f"substring: start {start} is past the end ({len(data)})")
        piece = data[start:]
    else:
        if start > end:
            raise TemplateError(f"substring: start {start} is after end {end}")
        piece = data[start:end]
    try:
        return piece.decode()
    except UnicodeDecodeError:
        raise TemplateError("substring: the indices split a multi-byte character") from None


def _field(delim: str, index: int, text: str) -> str:
    words = list(text) if delim == "" else text.split(delim)
    if index < 0 or index >= len(words):
        raise TemplateError(
            f"field: cannot take word {index} of {text!r} split by {delim!r} ({len(words)} words)"
        )
    return words[index]


_FUNCTIONS: Mapping[str, tuple[tuple[type, ...], Callable[..., Value]]] = {
    "contains": ((str, str), _contains),
    "field": ((str, int, str), _field),
    "substring": ((int, int, str), _substring),
    "toLower": ((str,), str.lower),
    "toUpper": ((str,), str.upper),
}


def _type_name(kind: type) -> str:
    return {str: "a string", int: "an integer", bool: "a boolean"}.get(kind, kind.__name__)


# --- evaluation -------------------------------------------------------------------------------------


def _eval(node: _Node, fields: Mapping[str, str]) -> Value:
    if isinstance(node, _Const):
        return node.value
    if isinstance(node, _Field):
        if node.name not in fields:
            raise TemplateError(
                f"unknown field .{node.name} (available: {', '.join('.' + f for f in sorted(fields))})"
            )
        return fields[node.name]
    piped: Value | None = None
    for command in node.commands:
        args = [_eval(o, fields) for o in command.operands]
        if piped is not None:
            args.append(piped)
        if not command.function:
            if piped is not None:
                raise TemplateError("a value can only be piped into a function")
            piped = args[0]
            continue
        kinds, function = _FUNCTIONS[command.function]
        if len(args) != len(kinds):
            raise TemplateError(f"{command.function} takes {len(kinds)} arguments, got {len(args)}")
        for position, (arg, kind) in enumerate(zip(args, kinds, strict=True), start=1):
            # bool is an int in Python; Go keeps them apart.
            if not isinstance(arg, kind) or (kind is int and isinstance(arg, bool)):
                raise TemplateError(
                    f"{command.function}: argument {position} must be {_type_name(kind)}, not {arg!r}"
                )
        piped = function(*args)
    assert piped is not None
    return piped


def _show(value: Value) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def _action_end(text: str, pos: int) -> int:
    """Where the action starting at ``pos`` ends (its ``}}``), skipping quoted strings."""
    quote = ""
    while pos < len(text):
        char = text[pos]
        if quote:
            if char == "\\" and quote == '"':
                pos += 2
                continue
            if char == quote:
                quote = ""
        elif char in ('"', "`"):
            quote = char
        elif text.startswith("}}", pos):
            return pos
        pos += 1
    raise TemplateError("unclosed action: '{{' without '}}'")


@dataclass(frozen=True)
class Template:
    """A parsed template: literal text and actions, in order."""

    parts: tuple[str | _Pipeline, ...]

    @classmethod
    def parse(cls, text: str) -> Template:
        parts: list[str | _Pipeline] = []
        pos = 0
        while True:
            start = text.find("{{", pos)
            if start < 0:
                parts.append(text[pos:])
                break
            end = _action_end(text, start + 2)
            literal = text[pos:start]
            inner = text[start + 2 : end]
            if inner.startswith("- ") or inner == "-":
                literal = literal.rstrip()
                inner = inner[1:]
            trim_after = inner.endswith(" -") or inner == "-"
            if trim_after:
                inner = inner[:-1]
            parts.append(literal)
            pos = end + 2
            if trim_after:
                while pos < len(text) and text[pos].isspace():
                    pos += 1
            stripped = inner.strip()
            if stripped.startswith("/*"):
                if not stripped.endswith("*/"):
                    raise TemplateError("unclosed comment")
                continue
            if not stripped:
                raise TemplateError("empty action {{}}")
            parser = _Parser(_tokens(inner), inner)
            pipeline = parser.pipeline(0)
            if parser.pos != len(parser.tokens):
                raise TemplateError(f"unexpected {parser.tokens[parser.pos].text!r} in {{{{{inner}}}}}")
            parts.append(pipeline)
        return cls(tuple(p for p in parts if p != ""))

    def fields(self) -> frozenset[str]:
        """Every field the template names (for checking a template before any value is known)."""
        found: set[str] = set()

        def walk(node: _Node) -> None:
            if isinstance(node, _Field):
                found.add(node.name)
            elif isinstance(node, _Pipeline):
                for command in node.commands:
                    for operand in command.operands:
                        walk(operand)

        for part in self.parts:
            if isinstance(part, _Pipeline):
                walk(part)
        return frozenset(found)

    def render(self, fields: Mapping[str, str], max_output: int = MAX_OUTPUT) -> str:
        out: list[str] = []
        size = 0
        for part in self.parts:
            piece = part if isinstance(part, str) else _show(_eval(part, fields))
            size += len(piece)
            if size > max_output:
                raise TemplateError(f"the result is longer than {max_output} characters")
            out.append(piece)
        return "".join(out)


def render(text: str, fields: Mapping[str, str], max_output: int = MAX_OUTPUT) -> str:
    """Parse and evaluate ``text`` with ``fields``; raises TemplateError."""
    if "{{" not in text:
        if len(text) > max_output:
            raise TemplateError(f"the result is longer than {max_output} characters")
        return text  # the common case: a plain value, no parsing
    return _parsed(text).render(fields, max_output)


# A class's or --extra-tags' few templates, rendered for every volume and snapshot: parsed once each.
# A Template is immutable, so sharing one is safe; a template that fails to parse is not cached.
_parsed = functools.lru_cache(maxsize=256)(Template.parse)
