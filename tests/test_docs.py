"""The documentation stays true: links resolve, and docs/protocol.md agrees with the configs."""
import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
LINK = re.compile(r"\[[^\]]*\]\(([^)\s]+)\)")
MISSING = object()


def without_code(markdown: str) -> str:
    return re.sub(r"```.*?```", "", markdown, flags=re.S)


def markdown_files():
    """The project's pages: not those of tool caches (.pytest_cache/README.md)."""
    pages = {ROOT / "README.md", *ROOT.glob("docs/*.md"), *ROOT.glob("*/README.md")}
    return sorted(p for p in pages if not p.relative_to(ROOT).parts[0].startswith("."))


def anchors(markdown: str) -> set[str]:
    """GitHub's ids of a file's headings."""
    headings = re.findall(r"^#+\s+(.*)$", without_code(markdown), flags=re.M)
    return {re.sub(r"[^\w\- ]", "", h.strip().lower()).replace(" ", "-") for h in headings}


@pytest.mark.parametrize("page", markdown_files(), ids=lambda p: str(p.relative_to(ROOT)))
def test_relative_links_point_to_files_in_the_repository(page):
    text = without_code(page.read_text())
    broken = []
    for target in LINK.findall(text):
        if re.match(r"[a-z]+:", target):  # https:, mailto:
            continue
        path, _, anchor = target.partition("#")
        file = (page.parent / path).resolve() if path else page
        if not file.exists() or ROOT not in (file, *file.parents):
            broken.append(target)
        elif anchor and file.suffix == ".md" and anchor not in anchors(file.read_text()):
            broken.append(target)
    assert not broken, f"{page.relative_to(ROOT)}: broken links {broken}"


def test_no_file_refers_to_documents_outside_the_repository():
    listed = subprocess.run(["git", "ls-files", "-z"], cwd=ROOT, capture_output=True)
    if listed.returncode:
        pytest.skip("not a git checkout")
    outside = [name + b".md" for name in (b"PROTOCOL", b"DESIGN")]
    found = [name for name in listed.stdout.decode().split("\0") if name
             and (ROOT / name).is_file()
             and any(word in (ROOT / name).read_bytes() for word in outside)]
    assert not found


def leaf(config: dict, key: str):
    """The value of ``key`` wherever it sits in nested mappings (lists are not searched)."""
    hits = []
    stack = [config]
    while stack:
        node = stack.pop()
        for k, v in node.items():
            if k == key:
                hits.append(v)
            if isinstance(v, dict):
                stack.append(v)
    assert len(hits) <= 1, f"{key} is set {len(hits)} times"
    return hits[0] if hits else MISSING


def same(cell: str, value) -> bool:
    written = cell.split(" (")[0].strip()
    if written == "-":
        return value is MISSING
    try:
        return float(written) == float(value)
    except (TypeError, ValueError):
        return yaml.safe_load(written) == value


PRINT_CONFIGS = """
import contextlib, io, json, sys
from medssl.downstream.cli import finetune_cli
printed = []
for config in sys.argv[1:]:
    out = io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.suppress(SystemExit):
        finetune_cli(["fit", "--config", config, "--print_config"])
    printed.append(out.getvalue())
print(json.dumps(printed))
"""


def settings(folder: str, names: list[str]) -> list[dict]:
    """Each config's settings: the file itself for pre-training; for fine-tuning, what the
    fine-tune command makes of it, its defaults included (``--print_config``)."""
    if folder != "Downstream/configs":
        return [yaml.safe_load((ROOT / folder / name).read_text()) for name in names]
    run = subprocess.run([sys.executable, "-c", PRINT_CONFIGS, *(f"{folder}/{n}" for n in names)],
                         cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr[-2000:]
    return [yaml.safe_load(out) for out in json.loads(run.stdout.splitlines()[-1])]


def checked_tables():
    """(config folder, header cells, rows) of each table marked ``<!-- checked: FOLDER -->``."""
    text = (ROOT / "docs" / "protocol.md").read_text()
    for folder, table in re.findall(r"<!-- checked: (\S+) -->\n((?:\|.*\n)+)", text):
        lines = [[c.strip() for c in line.strip().strip("|").split("|")] for line in table.splitlines()]
        yield folder, lines[0], lines[2:]


def test_protocol_page_agrees_with_the_configs():
    tables = list(checked_tables())
    assert len(tables) == 3
    compared = 0
    for folder, header, rows in tables:
        names = [re.search(r"`(\w+\.yaml)`", h)[1] for h in header[1:]]
        loaded = settings(folder, names)
        for row in rows:
            key = re.fullmatch(r"`(\w+)`", row[0])
            if not key:
                continue
            for name, config, cell in zip(names, loaded, row[1:]):
                value = leaf(config, key[1])
                assert same(cell, value), f"{folder}/{name}: {key[1]} is {value}, the page says {cell}"
                compared += 1
    assert compared > 80
