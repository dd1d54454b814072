"""The docs match the repository and the real tools: every file a page links to or names exists, and
every copy-paste block is well-formed — each shell command's options are ones the real CLI lists in
its `--help` (the venv's `ray` and `ray-iap-proxy`, the machine's `gcloud`, the manifests' `kubectl`),
`make` targets are ones `make help` lists, JSON given to `--headers` parses after the shell's quoting,
and YAML, JSON and Python blocks parse.

Commands of tools not installed here (helm, docker, jq, openssl, …) are listed in UNCHECKED and only
parsed, not checked."""

from __future__ import annotations

import ast
import functools
import json
import re
import shlex
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
PAGES = sorted([ROOT / "README.md", *(ROOT / "docs").glob("*.md")])
BIN = Path(sys.executable).parent
UNCHECKED = {  # tools not on this machine, or whose every use is plain: parsed, not checked
    "helm", "docker", "jq", "openssl", "cat", "echo", "export", "cut", "cd", "curl", "python", "python3",
    "test", "sleep", "kill", "wait", "bq",
}  # fmt: skip
ANSI = re.compile(r"\x1b\[[0-9;]*m")
LONG_FLAG = re.compile(r"(?<![\w-])(--[a-z][a-z0-9-]*)")
SHORT_FLAG = re.compile(r"(?<![\w-])(-[a-zA-Z])\b")


@dataclass(frozen=True)
class Block:
    page: str
    line: int
    lang: str
    text: str

    def __str__(self) -> str:
        return f"{self.page}:{self.line}"


def blocks() -> list[Block]:
    out = []
    for page in PAGES:
        text = page.read_text()
        for m in re.finditer(r"^```(\w*)\n(.*?)^```", text, re.S | re.M):
            out.append(
                Block(page.relative_to(ROOT).as_posix(), text[: m.start()].count("\n") + 1, m[1], m[2])
            )
    return out


BLOCKS = blocks()
SHELL = [b for b in BLOCKS if b.lang in ("sh", "bash")]


# -- shell: from a block to commands ---------------------------------------------------------------


def _substitutions(text: str) -> tuple[str, list[str]]:
    """`text` with each `$(...)` replaced by TOKEN, and the commands inside them (nesting-aware)."""
    inner, out, i = [], [], 0
    while i < len(text):
        if text.startswith("$(", i):
            depth, j = 1, i + 2
            while j < len(text) and depth:
                depth += {"(": 1, ")": -1}.get(text[j], 0)
                j += 1
            body = text[i + 2 : j - 1]
            rest, nested = _substitutions(body)
            inner += [rest, *nested]
            out.append("TOKEN")
            i = j
        else:
            out.append(text[i])
            i += 1
    return "".join(out), inner


def _strip_heredocs(text: str) -> str:
    return re.sub(r"<<'?(\w+)'?\n.*?\n\1\n", "\n", text, flags=re.S)


def commands(block: Block) -> list[list[str]]:
    """Each simple command of a shell block, as argv (leading VAR=value assignments dropped)."""
    text = _strip_heredocs(block.text).replace("\\\n", " ")
    text, inner = _substitutions(text)
    argvs = []
    for line in [text, *inner]:
        for raw in line.splitlines():
            if not raw.strip() or raw.lstrip().startswith("#"):
                continue
            lexer = shlex.shlex(raw, posix=True, punctuation_chars="|&;")
            lexer.whitespace_split = True
            lexer.commenters = "#"
            current: list[str] = []
            for token in lexer:
                if set(token) <= set("|&;"):
                    argvs.append(current)
                    current = []
                elif token.startswith(">"):
                    continue
                else:
                    current.append(token)
            argvs.append(current)
    cleaned = []
    for argv in argvs:
        while argv and re.match(r"^[A-Z_][A-Z0-9_]*=", argv[0]):
            argv = argv[1:]
        if argv:
            cleaned.append(argv)
    return cleaned


def program(argv: list[str]) -> str:
    return Path(argv[0]).name


# -- the real CLIs' flags --------------------------------------------------------------------------


def _run(argv: list[str]) -> str:
    r = subprocess.run(argv, capture_output=True, text=True, timeout=120, stdin=subprocess.DEVNULL, cwd=ROOT)
    assert r.returncode == 0, f"{' '.join(argv)} failed: {r.stderr[-500:]}"
    return ANSI.sub("", r.stdout + r.stderr)


@functools.cache
def help_flags(*argv: str) -> frozenset[str]:
    text = _run(list(argv))
    return frozenset(LONG_FLAG.findall(text)) | frozenset(SHORT_FLAG.findall(text))


@functools.cache
def _subcommands(command: str) -> frozenset[str]:
    """The subcommands of a command group of our CLI (none for a plain command)."""
    import argparse

    from proxy.cli import parser

    (top,) = [a for a in parser()._actions if isinstance(a, argparse._SubParsersAction)]
    groups = [a for a in top.choices[command]._actions if isinstance(a, argparse._SubParsersAction)]
    return frozenset(name for g in groups for name in g.choices)


def kubectl() -> str | None:
    for candidate in (ROOT / "build" / "tools" / "k8s" / "bin" / "kubectl", BIN / "kubectl"):
        if candidate.is_file():
            return str(candidate)
    return shutil.which("kubectl")


def known_flags(argv: list[str]) -> tuple[frozenset[str], list[str]]:
    """The options the real CLI accepts for this command line, and the arguments to check."""
    name, args = program(argv), argv[1:]
    if name == "ray":
        sub = args[:2] if args[:1] == ["job"] else args[:1]
        return help_flags(str(BIN / "ray"), *sub, "--help"), args[len(sub) :]
    if name == "ray-iap-proxy":  # a command, or a command group and its command (`audit records`)
        sub = list(args[:1])
        if len(args) > 1 and not args[1].startswith("-") and args[1] in _subcommands(args[0]):
            sub.append(args[1])
        return help_flags(str(BIN / "ray-iap-proxy"), *sub, "--help"), args[len(sub) :]
    if name == "gcloud":
        if shutil.which("gcloud") is None:  # the machine images here have it (Google's package)
            pytest.skip("gcloud is not installed: its commands' options are not checked")
        path = []
        for a in args:
            if a.startswith("-"):
                break
            path.append(a)
        flags = help_flags("gcloud", *path, "--help") | help_flags("gcloud", "help")
        return flags, args[len(path) :]
    if name == "kubectl":
        tool = kubectl()
        if tool is None:
            pytest.skip("no kubectl here (make k8s-tools installs one under build/tools)")
        words, skip = [], False
        for a in args:  # the subcommand: the words that are neither options nor their values
            if skip or a.startswith("-"):
                skip = a in ("-n", "-o", "-l", "-f", "-k", "-c", "--namespace")
                continue
            words.append(a)
        depth = 3 if words[:2] == ["create", "secret"] else 2 if words[:1] == ["create"] else 1
        return help_flags(tool, *words[:depth], "--help") | help_flags(tool, "options"), args
    raise AssertionError(f"no way to check {name}")


def option_names(args: list[str]) -> list[str]:
    names = []
    for a in args:
        if a == "--":
            break  # the rest is the job's own command line
        if a.startswith("--"):
            names.append(a.split("=", 1)[0])
        elif re.fullmatch(r"-[a-zA-Z]", a):
            names.append(a)
    return names


def _shell_commands() -> list[tuple[Block, list[str]]]:
    return [(b, argv) for b in SHELL for argv in commands(b)]


COMMANDS = _shell_commands()


@pytest.mark.parametrize("block, argv", COMMANDS, ids=[f"{b}:{program(a)}" for b, a in COMMANDS])
def test_each_command_uses_only_options_the_real_cli_has(block: Block, argv: list[str]) -> None:
    name = program(argv)
    if name in UNCHECKED:
        return
    if name == "make":
        listed = _run(["make", "--no-print-directory", "help"])
        for target in argv[1:]:
            if "=" not in target:
                assert f"make {target} " in listed, f"{block}: `make {target}` is not in `make help`"
        return
    flags, args = known_flags(argv)
    unknown = [n for n in option_names(args) if n not in flags]
    assert not unknown, f"{block}: {' '.join(argv)}: {unknown} not in the real --help"


def test_every_shell_command_is_of_a_known_tool() -> None:
    known = UNCHECKED | {"ray", "ray-iap-proxy", "gcloud", "kubectl", "make"}
    assert {program(a) for _, a in COMMANDS} <= known


def test_the_checked_cli_examples_are_there() -> None:
    """The blocks the issue asked for, so that a rewrite cannot drop them unnoticed."""
    text = {b.page: [] for b in SHELL}
    for b, argv in COMMANDS:
        text[b.page].append(" ".join(argv[:4]))
    flat = "\n".join(x for page in text.values() for x in page)
    for expected in (
        "gcloud auth print-identity-token --impersonate-service-account=",
        "ray job submit --working-dir",
        "gcloud iap settings set",
        "gcloud compute backend-services describe",
        ".venv/bin/ray-iap-proxy dev-config --out",
    ):
        assert expected in flat, expected


def _header_values(argv: list[str]) -> list[str]:
    return [argv[i + 1] for i, a in enumerate(argv[:-1]) if a == "--headers"]


def test_headers_given_to_ray_are_json_after_the_shells_quoting() -> None:
    found = 0
    for block, argv in COMMANDS:
        for arg in argv[1:] if argv[0] == "export" else []:
            if arg.startswith("RAY_JOB_HEADERS="):
                assert isinstance(json.loads(arg.partition("=")[2]), dict), f"{block}: {arg}"
                found += 1
        for value in _header_values(argv):
            assert isinstance(json.loads(value), dict), f"{block}: {value}"
            found += 1
    assert found >= 4


@pytest.mark.parametrize("block", [b for b in BLOCKS if b.lang in ("yaml", "json", "python")], ids=str)
def test_yaml_json_and_python_blocks_parse(block: Block) -> None:
    if block.lang == "yaml":
        assert list(yaml.safe_load_all(block.text)), block
    elif block.lang == "json":
        json.loads(block.text)
    else:
        ast.parse(block.text)


def test_the_python_example_calls_real_functions() -> None:
    """fetch_id_token and JobSubmissionClient(headers=) exist as the example calls them."""
    import inspect

    import google.oauth2.id_token
    from ray.job_submission import JobSubmissionClient

    assert list(inspect.signature(google.oauth2.id_token.fetch_id_token).parameters)[:2] == [
        "request",
        "audience",
    ]
    assert "headers" in inspect.signature(JobSubmissionClient).parameters


# -- files the docs name ---------------------------------------------------------------------------

REPO_PATH = re.compile(
    r"`((?:proxy|devkit|tests|bench|scripts|config|k8s|docs|examples|mk)/[\w./-]*[\w/])(?:::\w+)?(?:\[[^\]]*\])?`"
)


def _named_paths() -> list[tuple[str, str]]:
    out = []
    for page in PAGES:
        text = page.read_text()
        for m in re.finditer(r"\]\(([^)#\s]+)(?:#[^)]*)?\)", text):
            target = m[1]
            if not re.match(r"^[a-z]+:", target):
                out.append((page.relative_to(ROOT).as_posix(), (page.parent / target).resolve().as_posix()))
        for m in REPO_PATH.finditer(text):
            out.append((page.relative_to(ROOT).as_posix(), (ROOT / m[1]).as_posix()))
    return out


def test_every_file_the_docs_name_is_in_the_repository() -> None:
    missing = sorted({f"{page}: {Path(p).relative_to(ROOT) if p.startswith(str(ROOT)) else p}"
                      for page, p in _named_paths() if not Path(p).exists()})  # fmt: skip
    assert missing == []
    assert len(_named_paths()) > 50


def test_no_page_points_outside_the_repository() -> None:
    for page in PAGES:
        text = page.read_text()
        assert "../shared" not in text and "shared/peers" not in text and "threats.md" not in text, page


def test_make_help_lists_every_target_the_readme_lists() -> None:
    table = (ROOT / "README.md").read_text().split("## Make targets", 1)[1].split("\n## ", 1)[0]
    targets = re.findall(r"^\| `make ([\w-]+)", table, re.M)
    listed = _run(["make", "--no-print-directory", "help"])
    assert len(targets) >= 10
    assert [t for t in targets if f"make {t} " not in listed] == []
