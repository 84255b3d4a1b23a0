"""Safe YAML reading for scenario files, keeping each key's line and column.

PyYAML's ``safe_load`` silently keeps the last of two duplicate keys and has no size or
alias-expansion limits. Scenario files come from users, so this module composes the node
tree itself: it refuses duplicate keys, unknown tags (``!!python/object``), oversized files,
deep nesting and alias bombs, and records where every key path sits in the file so that
validation errors can point at it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

MAX_BYTES = 1_000_000
MAX_DEPTH = 40
MAX_NODES = 200_000


class YamlInputError(ValueError):
    """The file is not a safe, well-formed YAML document."""

    def __init__(self, problems: list[str]):
        self.problems = problems
        super().__init__("\n".join(problems))


@dataclass
class YamlDocument:
    """Parsed data plus the (line, column) of every key path, 1-based."""

    path: Path
    data: Any
    marks: dict[tuple, tuple[int, int]] = field(default_factory=dict)

    def where(self, key_path: tuple) -> str:
        """``file:line:col: a.b[2].c: `` for the deepest known prefix of ``key_path``."""
        kp = tuple(key_path)
        probe = kp
        while probe and probe not in self.marks:
            probe = probe[:-1]
        line, col = self.marks.get(probe, (1, 1))
        dotted = _dotted(kp)
        return f"{self.path}:{line}:{col}: " + (f"{dotted}: " if dotted else "")


def _dotted(key_path: tuple) -> str:
    out = ""
    for part in key_path:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += ("." if out else "") + str(part)
    return out


def load_yaml(path: str | Path) -> YamlDocument:
    """Read ``path`` safely; raise :class:`YamlInputError` with located messages."""
    path = Path(path)
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise YamlInputError([f"{path}: cannot read file ({exc.strerror})"]) from None
    if len(raw) > MAX_BYTES:
        raise YamlInputError([f"{path}: file is {len(raw):,} bytes; scenario files are limited to {MAX_BYTES:,}"])
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise YamlInputError([f"{path}: not UTF-8 text (byte {exc.start})"]) from None
    return parse_yaml(text, path)


def parse_yaml(text: str, path: str | Path = "<string>") -> YamlDocument:
    """Parse YAML text (see :func:`load_yaml`)."""
    path = Path(path)
    loader = yaml.SafeLoader(text)
    try:
        try:
            node = loader.get_single_node()
        except yaml.MarkedYAMLError as exc:
            mark = exc.problem_mark or exc.context_mark
            where = f"{path}:{mark.line + 1}:{mark.column + 1}: " if mark else f"{path}: "
            raise YamlInputError([where + f"YAML syntax error: {exc.problem or exc}"]) from None
        except yaml.YAMLError as exc:
            raise YamlInputError([f"{path}: YAML error: {exc}"]) from None
        doc = YamlDocument(path=path, data=None)
        if node is None:
            raise YamlInputError([f"{path}:1:1: the file is empty"])
        counter = [0]
        doc.data = _build(node, (), doc, loader, counter, 0)
        return doc
    finally:
        loader.dispose()


def _build(node, key_path: tuple, doc: YamlDocument, loader, counter: list[int], depth: int) -> Any:
    counter[0] += 1
    if counter[0] > MAX_NODES:
        raise YamlInputError(
            [f"{doc.path}: document expands to more than {MAX_NODES:,} nodes (alias bomb?); refused"]
        )
    if depth > MAX_DEPTH:
        m = node.start_mark
        raise YamlInputError([f"{doc.path}:{m.line + 1}:{m.column + 1}: nesting deeper than {MAX_DEPTH} levels; refused"])
    mark = node.start_mark
    doc.marks.setdefault(key_path, (mark.line + 1, mark.column + 1))
    if isinstance(node, yaml.MappingNode):
        if node.tag != "tag:yaml.org,2002:map":
            _bad_tag(node, key_path, doc)
        out: dict[Any, Any] = {}
        loader.flatten_mapping(node)
        for key_node, value_node in node.value:
            key = _build(key_node, key_path + ("<key>",), doc, loader, counter, depth + 1)
            if not isinstance(key, (str, int, float, bool)) or key is None:
                m = key_node.start_mark
                raise YamlInputError([f"{doc.path}:{m.line + 1}:{m.column + 1}: {_dotted(key_path) or 'top level'}: keys must be plain scalars"])
            if key in out:
                m = key_node.start_mark
                first = doc.marks.get(key_path + (key,), ("?", "?"))
                raise YamlInputError(
                    [f"{doc.path}:{m.line + 1}:{m.column + 1}: {_dotted(key_path + (key,))}: duplicate key '{key}' (first at line {first[0]}); each key may appear once"]
                )
            km = key_node.start_mark
            doc.marks[key_path + (key,)] = (km.line + 1, km.column + 1)
            out[key] = _build(value_node, key_path + (key,), doc, loader, counter, depth + 1)
        doc.marks.pop(key_path + ("<key>",), None)
        return out
    if isinstance(node, yaml.SequenceNode):
        if node.tag != "tag:yaml.org,2002:seq":
            _bad_tag(node, key_path, doc)
        return [
            _build(child, key_path + (i,), doc, loader, counter, depth + 1)
            for i, child in enumerate(node.value)
        ]
    if not node.tag.startswith("tag:yaml.org,2002:") or node.tag.endswith(("binary", "omap", "pairs", "set")):
        _bad_tag(node, key_path, doc)
    try:
        return loader.construct_object(node, deep=True)
    except yaml.constructor.ConstructorError:
        _bad_tag(node, key_path, doc)


def _bad_tag(node, key_path: tuple, doc: YamlDocument):
    m = node.start_mark
    raise YamlInputError(
        [f"{doc.path}:{m.line + 1}:{m.column + 1}: {_dotted(key_path) or 'top level'}: tag '{node.tag}' is not allowed; scenario files hold plain mappings, lists, strings and numbers"]
    )
