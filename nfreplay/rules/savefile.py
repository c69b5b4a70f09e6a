"""Reading nfreplay's rules back out of `iptables-save` output (nft and legacy print the same
format). Pure: text in, `Rule` values out.

Only rules whose first comment starts with the requested owner prefix are returned; every
other line (operators' rules, chain policies, warnings, other tools' tables) is ignored, so
an odd rule we do not understand can never break a teardown.
"""

from __future__ import annotations

import shlex

from nfreplay.rules.model import TABLES, Rule

__all__ = ["parse_save"]


def _parse_rule(table: str, line: str) -> Rule | None:
    """One `-A CHAIN ...` line → Rule, or None when it carries no comment."""
    tokens = shlex.split(line)  # iptables-save quotes strings shell-style (xtables_save_string)
    if len(tokens) < 2 or tokens[0] != "-A":
        return None
    chain, rest = tokens[1], tokens[2:]
    match: list[str] = []
    target: list[str] = []
    owner: str | None = None
    i = 0
    while i < len(rest):
        tok = rest[i]
        if tok == "-g":
            return None  # nfreplay never installs goto rules, so none can be ours
        if tok == "-j":
            target = rest[i + 1:]  # iptables-save prints the target last
            break
        if (owner is None and tok == "-m" and rest[i + 1:i + 3] == ["comment", "--comment"]
                and i + 3 < len(rest)):
            owner = rest[i + 3]
            i += 4
            continue
        if tok == "--comment" and i + 1 < len(rest):
            # A second comment stays in the match; its value is consumed here so a
            # comment that reads "-j" cannot be mistaken for the target.
            match += rest[i:i + 2]
            i += 2
            continue
        match.append(tok)
        i += 1
    if owner is None or not target:
        return None
    return Rule(table=table, chain=chain, match=tuple(match), target=tuple(target), owner=owner)


def parse_save(text: str, owner_prefix: str) -> list[Rule]:
    """Every rule in `text` (iptables-save output) whose owner comment starts with
    `owner_prefix`, in table then chain order as printed. Lines that do not parse are
    skipped only if they are not ours; an nfreplay-tagged line that does not parse raises
    ValueError (it would otherwise be silently left behind)."""
    rules: list[Rule] = []
    table = ""
    for raw in text.splitlines():
        line = raw.strip()
        if line.startswith("*"):
            table = line[1:]
            continue
        if not line.startswith("-A ") or table not in TABLES:
            continue
        if owner_prefix not in line:
            continue  # cheap filter; the exact test is on the parsed comment below
        try:
            rule = _parse_rule(table, line)
        except ValueError as exc:
            raise ValueError(f"cannot parse iptables-save line {line!r}: {exc}") from exc
        if rule is not None and rule.owner.startswith(owner_prefix):
            rules.append(rule)
    return rules
