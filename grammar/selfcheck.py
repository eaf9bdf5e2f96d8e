"""A self-check of the validity check in every grammar: known-valid and known-broken fills.

Each case is a small half-edited document (it has a syntax error of its own, away from the
hole, which the check must ignore), a hole, fills that are valid there and fills that are not.
"""

from __future__ import annotations

from dataclasses import dataclass

from diffill.grammar.registry import GRAMMAR_NAMES, grammar
from diffill.grammar.validity import HoleChecker

HOLE = "<|>"


@dataclass(frozen=True)
class SelfCheckCase:
    document: str  # contains HOLE once
    valid: tuple[str, ...]
    broken: tuple[str, ...]


CASES: dict[str, SelfCheckCase] = {
    "python": SelfCheckCase(
        "def broken(:\n    pass\n\n\ndef total(xs):\n    s = 0\n    for x in xs:\n        <|>\n    return s\n",
        ("s += x", "s = s + f(x, [1, 2])", "if x:\n            s += 1"),
        ("s += )", "s = (x", "for x in", "s = x x = 1")),
    "javascript": SelfCheckCase(
        "function other() {\n  let y = ;\n}\n\nfunction total(xs) {\n  let s = 0;\n  <|>\n  return s;\n}\n",
        ("for (const x of xs) { s += x; }", "s = xs.reduce((a, b) => a + b, 0);"),
        ("for (const x of xs) { s += x;", "s = xs.reduce((a, b) => a + b, 0;", "s += ;")),
    "typescript": SelfCheckCase(
        "function other(): void {\n  let y: number = ;\n}\n\n"
        "function total(xs: number[]): number {\n  let s: number = 0;\n  <|>\n  return s;\n}\n",
        ("for (const x of xs) { s += x; }", "const t: number[] = xs.map((x: number) => x * 2);"),
        ("const t: number[] = xs.map((x: number) => x * 2;", "let t: number = (1;")),
    "tsx": SelfCheckCase(
        "function Other() {\n  let y: number = ;\n}\n\nfunction Item(p: { name: string }) {\n  <|>\n}\n",
        ("return <li className=\"item\">{p.name}</li>;", "const n: string = p.name;"),
        ("return <li className=\"item\">{p.name}</li;", "const n: string = p.name(;")),
    "go": SelfCheckCase(
        "package main\n\nfunc broken( {\n}\n\nfunc total(xs []int) int {\n\ts := 0\n\t<|>\n\treturn s\n}\n",
        ("for _, x := range xs {\n\t\ts += x\n\t}", "s = len(xs)"),
        ("for _, x := range xs {\n\t\ts += x", "s = len(xs", "s := := 1")),
    "rust": SelfCheckCase(
        "fn broken( {\n}\n\nfn total(xs: &[i32]) -> i32 {\n    let mut s = 0;\n    <|>\n    s\n}\n",
        ("for x in xs { s += x; }", "s = xs.iter().sum();"),
        ("for x in xs { s += x;", "s = xs.iter().sum(;", "let = 1;")),
    "java": SelfCheckCase(
        "class Broken {\n  void broken( {\n  }\n}\n\nclass Sum {\n  int total(int[] xs) {\n    int s = 0;\n"
        "    <|>\n    return s;\n  }\n}\n",
        ("for (int x : xs) { s += x; }", "s = java.util.Arrays.stream(xs).sum();"),
        ("for (int x : xs) { s += x;", "s = java.util.Arrays.stream(xs).sum(;", "int = 1;")),
    "c": SelfCheckCase(
        "int other(void) {\n  int y = ;\n}\n\nint total(int *xs, int n) {\n  int s = 0;\n  <|>\n  return s;\n}\n",
        ("for (int i = 0; i < n; i++) { s += xs[i]; }", "s = xs[0] + n;"),
        ("for (int i = 0; i < n; i++) { s += xs[i];", "s = xs[0] + ;", "s = (xs[0];")),
    "cpp": SelfCheckCase(
        "int other() {\n  int y = ;\n}\n\n"
        "int total(const std::vector<int>& xs) {\n  int s = 0;\n  <|>\n  return s;\n}\n",
        ("for (int x : xs) { s += x; }", "s = std::accumulate(xs.begin(), xs.end(), 0);"),
        ("for (int x : xs) { s += x;", "s = std::accumulate(xs.begin(), xs.end(), 0;", "s = ;")),
}
assert set(CASES) == set(GRAMMAR_NAMES)


def checker_for(name: str) -> HoleChecker:
    case = CASES[name]
    prefix, suffix = case.document.split(HOLE)
    return HoleChecker(grammar(name), prefix, suffix)


def self_check() -> dict[str, bool]:
    """Grammar name -> whether every valid fill passed and every broken fill failed."""
    out = {}
    for name, case in CASES.items():
        check = checker_for(name)
        out[name] = (all(check.is_valid(f) for f in case.valid)
                     and not any(check.is_valid(f) for f in case.broken))
    return out
