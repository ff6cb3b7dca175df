"""Bounds checked before a config is parsed or analysed: size and nesting.

CPython's parser, ``ast.unparse`` and libcst recurse once per nesting level (a 200-deep list,
a 1,000-term sum), and libcst's native parser crashes the process on 5,000 nested
parentheses, so the depth is measured without recursion first and a file beyond what any
real config holds is refused with one line instead.
"""

from __future__ import annotations

import ast
import io
import re
import tokenize
import warnings

from celery_doctor.settings.interface import SettingsError

# Nesting levels allowed: real configs stay under ~15; every recursive consumer handles 100.
MAX_DEPTH = 100
# Adjacent string literals libcst nests one level each: the same bound.
MAX_ADJACENT_STRINGS = MAX_DEPTH
# libcst needs ~300 bytes of memory per source byte and minutes for megabytes.
MAX_CST_BYTES = 512 * 1024


def too_deep(path: object) -> SettingsError:
    return SettingsError(f"{path}: nested too deeply to analyse safely (more than {MAX_DEPTH} levels); "
                         "is this generated code rather than a config?")


def parse(text: str, path: object) -> ast.Module:
    """``ast.parse`` with its resource errors as one line, and the tree's depth checked.
    SyntaxError and ValueError (NUL bytes) pass through for the caller's own message."""
    try:
        with warnings.catch_warnings():  # "invalid escape sequence" and the like: not for our stderr
            warnings.simplefilter("ignore", SyntaxWarning)
            tree = ast.parse(text, filename=str(path))
    except (MemoryError, RecursionError):
        raise too_deep(path) from None
    if depth(tree) > MAX_DEPTH:
        raise too_deep(path)
    return tree


def depth(tree: ast.AST) -> int:
    """The deepest nesting of ``tree``, measured with an explicit stack."""
    deepest = 0
    stack = [(tree, 1)]
    while stack:
        node, level = stack.pop()
        if level > deepest:
            deepest = level
            if deepest > MAX_DEPTH:
                return deepest
        stack.extend((child, level + 1) for child in ast.iter_child_nodes(node))
    return deepest


def python2_hint(text: str, exc: SyntaxError) -> str:
    if re.search(r"^\s*print\s+[^(\s=]", text, re.M) or re.search(r"except\s+\w+\s*,\s*\w+\s*:", text) \
            or "Missing parentheses" in (exc.msg or ""):
        return " (is this a Python 2 file? convert it with 2to3 first)"
    return ""


def check_for_libcst(text: str, path: object) -> None:
    """What libcst cannot take although CPython can: refuse it before libcst sees it."""
    if "\x00" in text:
        raise SettingsError(f"{path}: holds a NUL byte: not a Python source file")
    if len(text.encode("utf-8", "replace")) > MAX_CST_BYTES:
        raise SettingsError(f"{path}: larger than {MAX_CST_BYTES // 1024} KB: too large to rewrite safely "
                            "(the audit still reads it: celery-doctor config FILE)")
    try:
        parse(text, path)
    except SyntaxError as exc:
        raise SettingsError(f"{path}:{exc.lineno}: syntax error: {exc.msg}{python2_hint(text, exc)}") from None
    run = 0
    try:
        for token in tokenize.generate_tokens(io.StringIO(text).readline):
            if token.type == tokenize.STRING:
                run += 1
                if run > MAX_ADJACENT_STRINGS:
                    raise too_deep(path)
            elif token.type not in (tokenize.NL, tokenize.COMMENT):
                run = 0
    except (tokenize.TokenError, SyntaxError):
        pass  # ast accepted it; the tokenizer module is stricter about a few edge cases
