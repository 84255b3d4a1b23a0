"""Safe YAML reading for scenario files, keeping each key's line and column.

Scenario files come from users, so they are read as data, never as code, and within limits:

* only plain mappings, lists, strings, numbers, booleans, null and dates are built; any other
  tag (``!!python/object``, ``!include``, ``!!binary``, ``!!set``) is refused;
* a key may appear once per mapping (PyYAML's ``safe_load`` silently keeps the last one);
* keys are text: ``yes:`` or ``2020:`` as a key is refused with a hint to quote it;
* merge keys (``<<: *anchor``) are refused: inheritance between scenarios is ``extends``;
* numbers are finite (no ``.nan`` or ``.inf``) and integers fit in a float exactly;
* files over :data:`MAX_BYTES`, nesting deeper than :data:`MAX_DEPTH` and documents whose
  aliases expand to more than :data:`MAX_NODES` nodes (a "billion laughs" bomb) are refused
  before they can use much memory or time; depth is checked while composing, before
  PyYAML's recursive composer can exhaust the stack.

Every key path's (line, column) is recorded so that validation errors can point at it.
Every problem is raised as :class:`YamlInputError` with ``file:line:col:`` messages; no other
exception escapes for any input text.
"""

from __future__ import annotations

import datetime as _dt
import math
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

import yaml

#: Largest scenario file read (bytes). The baseline is about 10 kB.
MAX_BYTES = 1_000_000
#: Deepest nesting of mappings and lists. Scenario files need about six levels.
MAX_DEPTH = 40
#: Most nodes a document may expand to once aliases are followed.
MAX_NODES = 50_000
#: Largest integer accepted: beyond it an integer cannot be represented exactly as a float.
MAX_INT = 2**53

_STD = "tag:yaml.org,2002:"
_SCALAR_TAGS = {_STD + t for t in ("str", "int", "float", "bool", "null", "timestamp")}


class YamlInputError(ValueError):
    """The file is not a safe, well-formed YAML document.

    Attributes:
        problems: one ``file:line:col: message`` (or ``file: message``) line per problem.
    """

    def __init__(self, problems: list[str]):
        self.problems = problems
        super().__init__("\n".join(problems))


@dataclass
class YamlDocument:
    """Parsed data plus the 1-based (line, column) of every key path.

    Attributes:
        path: the file as named to the user in messages.
        data: the document's plain Python data.
        marks: ``{key_path: (line, column)}``; a key path is a tuple of mapping keys (str) and
            list indexes (int); the mark of a mapping entry is where its key starts.
    """

    path: Path
    data: Any
    marks: dict[tuple, tuple[int, int]] = field(default_factory=dict)

    def position(self, key_path: tuple) -> tuple[int, int]:
        """(line, column) of the deepest known prefix of ``key_path`` ((1, 1) if none)."""
        probe = tuple(key_path)
        while probe and probe not in self.marks:
            probe = probe[:-1]
        return self.marks.get(probe, (1, 1))

    def where(self, key_path: tuple) -> str:
        """``file:line:col: a.b[2].c: `` for the deepest known prefix of ``key_path``."""
        line, col = self.position(key_path)
        dotted = dotted_path(tuple(key_path))
        return f"{self.path}:{line}:{col}: " + (f"{dotted}: " if dotted else "")


def dotted_path(key_path: tuple) -> str:
    """``("events", 2, "item")`` -> ``events[2].item``."""
    out = ""
    for part in key_path:
        if isinstance(part, int) and not isinstance(part, bool):
            out += f"[{part}]"
        else:
            out += ("." if out else "") + str(part)
    return out


def load_yaml(path: str | Path) -> YamlDocument:
    """Read ``path`` safely.

    Args:
        path: the file; messages name it exactly as given.

    Raises:
        YamlInputError: the file is missing, unreadable, too large, not UTF-8 text, or not a
            safe, well-formed YAML document (see the module docstring).
    """
    path = Path(path)
    try:
        is_dir, exists = path.is_dir(), path.exists()
    except (OSError, ValueError) as exc:
        raise YamlInputError([f"{path}: cannot read the file ({exc})"]) from None
    if is_dir:
        raise YamlInputError(
            [
                f"{path}: is a directory, not a scenario file "
                f"(to check every scenario in it: {path}/*.yaml)"
            ]
        )
    if not exists:
        raise YamlInputError([f"{path}: no such file"])
    try:
        with path.open("rb") as fh:
            raw = fh.read(MAX_BYTES + 1)
    except OSError as exc:
        raise YamlInputError([f"{path}: cannot read the file ({exc.strerror or exc})"]) from None
    if len(raw) > MAX_BYTES:
        raise YamlInputError(
            [
                f"{path}: file is larger than {MAX_BYTES:,} bytes; "
                "a scenario file is a few kB of YAML"
            ]
        )
    if b"\x00" in raw:
        raise YamlInputError(
            [f"{path}: binary file (it contains NUL bytes); a scenario is a YAML text file"]
        )
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise YamlInputError(
            [
                f"{path}: not UTF-8 text (undecodable byte at offset {exc.start}); "
                "save the file as UTF-8"
            ]
        ) from None
    return parse_yaml(text, path)


def parse_yaml(text: str, path: str | Path = "<string>") -> YamlDocument:
    """Parse YAML ``text`` safely (see :func:`load_yaml`); ``path`` names it in messages.

    Small documents are cached by (text, path), so a parent scenario shared by many children
    is parsed once; the returned document must be treated as read-only.

    Raises:
        YamlInputError: with located messages.
    """
    if len(text) > MAX_BYTES:
        raise YamlInputError(
            [
                f"{path}: text is longer than {MAX_BYTES:,} characters; "
                "a scenario file is a few kB of YAML"
            ]
        )
    if len(text) <= _CACHE_MAX_TEXT:
        return _parse_cached(text, str(path))
    return _parse(text, Path(path))


_CACHE_MAX_TEXT = 64_000


@lru_cache(maxsize=64)
def _parse_cached(text: str, path: str) -> YamlDocument:
    return _parse(text, Path(path))


def _parse(text: str, path: Path) -> YamlDocument:
    try:
        loader = _Loader(text, path)  # the reader checks for unprintable characters here
    except yaml.YAMLError as exc:
        raise YamlInputError([_syntax_message(exc, path, text)]) from None
    try:
        try:
            node = loader.get_single_node()
        except yaml.YAMLError as exc:
            raise YamlInputError([_syntax_message(exc, path)]) from None
        if node is None:
            raise YamlInputError(
                [f"{path}:1:1: the file is empty; a scenario needs at least 'name' and 'question'"]
            )
        doc = YamlDocument(path=path, data=None)
        doc.data = _Builder(doc, loader).build(node, (), 0)
        return doc
    finally:
        loader.dispose()


class _Loader(yaml.SafeLoader):
    """PyYAML's safe loader with a depth limit while composing (its composer is recursive)."""

    def __init__(self, text: str, path: Path):
        super().__init__(text)
        self._path = path
        self._depth = 0

    def compose_node(self, parent, index):
        self._depth += 1
        try:
            if self._depth > MAX_DEPTH:
                m = self.peek_event().start_mark
                raise YamlInputError(
                    [
                        f"{self._path}:{m.line + 1}:{m.column + 1}: "
                        f"nesting deeper than {MAX_DEPTH} levels; "
                        "refused (a scenario needs about six)"
                    ]
                )
            return super().compose_node(parent, index)
        finally:
            self._depth -= 1


def _syntax_message(exc: yaml.YAMLError, path: Path, text: str | None = None) -> str:
    """One located line for a PyYAML reader, scanner, parser or composer error."""
    mark = getattr(exc, "problem_mark", None) or getattr(exc, "context_mark", None)
    if isinstance(exc, yaml.reader.ReaderError):
        char = exc.character if isinstance(exc.character, str) else chr(exc.character)
        where = f"{path}: "
        if text is not None:
            before = text[: exc.position]
            where = (
                f"{path}:{before.count(chr(10)) + 1}:"
                f"{exc.position - (before.rfind(chr(10)) + 1) + 1}: "
            )
        return where + f"control character U+{ord(char):04X} is not allowed in YAML text; remove it"
    problem = getattr(exc, "problem", None) or str(exc)
    context = getattr(exc, "context", None)
    if context == "expected a single document in the stream":
        problem = (
            "the file holds more than one YAML document ('---'); a scenario file is one document"
        )
    elif "found character '\\t'" in problem:
        problem = "a tab character cannot indent YAML; indent with spaces"
    else:
        for start, friendly in _FRIENDLY:
            if problem.startswith(start):
                problem = f"{friendly} (parser: {problem})"
                break
        else:
            if context and context not in problem:
                problem = f"{problem} ({context})"
    where = f"{path}:{mark.line + 1}:{mark.column + 1}: " if mark is not None else f"{path}: "
    return where + f"YAML syntax error: {problem}"


#: PyYAML's parser messages, said in terms of what to fix.
_FRIENDLY: tuple[tuple[str, str], ...] = (
    ("expected <block end>", "this line's indentation does not line up with the lines above it"),
    (
        "mapping values are not allowed here",
        "unexpected ':' (put text containing ': ' in quotes, or check the indentation)",
    ),
    ("could not find expected ':'", "a key is missing its ':' (or a quoted text is not closed)"),
    (
        "found undefined alias",
        "an alias (*name) refers to an anchor (&name) that is not defined above it",
    ),
    (
        "found unexpected end of stream",
        "the file ends inside a quoted text or a [list] / {mapping}",
    ),
    ("expected ',' or ']'", "a [list] is not closed with ']'"),
    ("expected ',' or '}'", "a {mapping} is not closed with '}'"),
)


def _describe_scalar(value: Any) -> str:
    if isinstance(value, bool):
        return f"the boolean {str(value).lower()}"
    if value is None:
        return "an empty key (null)"
    if isinstance(value, (int, float)):
        return f"the number {value}"
    if isinstance(value, (_dt.date, _dt.datetime)):
        return f"the date {value.isoformat()}"
    return f"{value!r}"


def _short_tag(tag: str) -> str:
    return "!!" + tag[len(_STD) :] if tag.startswith(_STD) else tag


class _Builder:
    """Turns a composed node graph into plain data, enforcing the limits, recording marks."""

    def __init__(self, doc: YamlDocument, loader: yaml.SafeLoader):
        self.doc = doc
        self.loader = loader
        self.count = 0

    def _fail(self, node, key_path: tuple, message: str):
        m = node.start_mark
        dotted = dotted_path(key_path)
        raise YamlInputError(
            [
                f"{self.doc.path}:{m.line + 1}:{m.column + 1}: "
                + (f"{dotted}: " if dotted else "")
                + message
            ]
        )

    def build(self, node, key_path: tuple, depth: int) -> Any:
        self.count += 1
        if self.count > MAX_NODES:
            self._fail(
                node,
                (),
                f"the document expands to more than {MAX_NODES:,} values through aliases (*name); "
                "refused (a 'billion laughs' bomb?)",
            )
        if depth > MAX_DEPTH:
            self._fail(
                node, key_path, f"nesting deeper than {MAX_DEPTH} levels through aliases; refused"
            )
        mark = node.start_mark
        self.doc.marks.setdefault(key_path, (mark.line + 1, mark.column + 1))
        if isinstance(node, yaml.MappingNode):
            return self._mapping(node, key_path, depth)
        if isinstance(node, yaml.SequenceNode):
            if node.tag != _STD + "seq":
                self._bad_tag(node, key_path)
            return [
                self.build(child, key_path + (i,), depth + 1) for i, child in enumerate(node.value)
            ]
        return self._scalar(node, key_path)

    def _mapping(self, node, key_path: tuple, depth: int) -> dict:
        if node.tag != _STD + "map":
            self._bad_tag(node, key_path)
        out: dict[str, Any] = {}
        for key_node, value_node in node.value:
            if key_node.tag == _STD + "merge":
                self._fail(
                    key_node,
                    key_path,
                    "merge keys ('<<') are not supported; "
                    "to build on another scenario use 'extends', otherwise write the keys out",
                )
            if not isinstance(key_node, yaml.ScalarNode):
                self._fail(key_node, key_path, "a key must be plain text, not a list or mapping")
            key = self._scalar(key_node, key_path)
            if not isinstance(key, str):
                hint = (
                    " (YAML reads yes/no/on/off/true/false as booleans)"
                    if isinstance(key, bool)
                    else ""
                )
                self._fail(
                    key_node,
                    key_path,
                    f"keys must be text, found {_describe_scalar(key)}{hint}; "
                    "put the key in quotes",
                )
            if key in out:
                first = self.doc.marks.get(key_path + (key,), ("?", "?"))
                self._fail(
                    key_node,
                    key_path + (key,),
                    f"duplicate key '{key}' (first at line {first[0]}); "
                    "each key may appear once in a mapping",
                )
            km = key_node.start_mark
            self.doc.marks[key_path + (key,)] = (km.line + 1, km.column + 1)
            out[key] = self.build(value_node, key_path + (key,), depth + 1)
        return out

    def _scalar(self, node, key_path: tuple) -> Any:
        if node.tag in (_STD + "value", _STD + "merge"):
            return str(node.value)  # a plain '=' or '<<' outside a key: just text
        if node.tag not in _SCALAR_TAGS:
            self._bad_tag(node, key_path)
        try:
            value = self.loader.construct_object(node, deep=True)
        except (yaml.YAMLError, ValueError, OverflowError, TypeError):
            # e.g. an integer of thousands of digits or an impossible date (2021-13-45).
            self._fail(
                node,
                key_path,
                f"cannot read the value {str(node.value)[:40]!r} "
                f"as {node.tag.removeprefix(_STD)}; put it in quotes if it is text",
            )
        if isinstance(value, float) and not math.isfinite(value):
            self._fail(
                node,
                key_path,
                f"'{node.value}' is not a finite number; scenario numbers must be finite",
            )
        if isinstance(value, int) and not isinstance(value, bool) and abs(value) > MAX_INT:
            self._fail(
                node, key_path, f"the integer {node.value[:40]} is too large (limit {MAX_INT:,})"
            )
        if isinstance(value, _dt.datetime):
            value = value.replace(tzinfo=None) if value.tzinfo else value
        return value

    def _bad_tag(self, node, key_path: tuple):
        self._fail(
            node,
            key_path,
            f"tag '{_short_tag(node.tag)}' is not allowed; "
            "scenario files hold plain mappings, lists, text and numbers",
        )
