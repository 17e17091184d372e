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


# each script and the medssl command that is the same (Pre-Training/NAME.py: medssl pretrain NAME)
SCRIPT_COMMANDS = {
    "Pre-Training/preprocess.py": "ingest", "Pre-Training/export.py": "export",
    "Pre-Training/make_phantom.py": "phantom", "Pre-Training/store_info.py": "inspect",
    "Downstream/finetune.py": "finetune", "Downstream/sweep.py": "sweep", "Downstream/report.py": "report",
    "Downstream/download.py": "download dataset", "checkpoints/download.py": "download checkpoint",
    "checkpoints/describe.py": "inspect", "-m medssl.pretrain": "pretrain",
}
SCRIPT_COMMAND = re.compile(r"\bpython3? (-m medssl\.pretrain|(?:Pre-Training|Downstream|checkpoints)/[\w-]+\.py)"
                            r"\b(.*)")
MEDSSL_COMMAND = re.compile(r"\bmedssl ([a-z][\w-]*)(?: ([\w-]+))?")
EXAMPLE_METHODS = {"simsiam"}  # docs/adding-a-method.md's example, not registered


def shown_commands(markdown: str) -> list[str]:
    """The commands a page shows, whitespace collapsed: each line of its shell code blocks
    (continuation lines joined, comments cut) and each inline code span."""
    lines = []
    for block in re.findall(r"```(?:bash|sh|shell)\n(.*?)```", markdown, flags=re.S):
        lines += [re.sub(r"(^|\s)#.*", "", line) for line in block.replace("\\\n", " ").splitlines()]
    lines += re.findall(r"`([^`]+)`", without_code(markdown))
    return [" ".join(line.split()) for line in lines if line.strip()]


def medssl_form(script: str, args: str) -> str:
    """``medssl SUBCOMMAND ARGS`` for ``python SCRIPT ARGS`` (a trailing ``...`` left out)."""
    command = SCRIPT_COMMANDS.get(script)
    if command is None and script.startswith("Pre-Training/"):
        command = f"pretrain {Path(script).stem}"
    assert command, f"{script}: which medssl command is it? (SCRIPT_COMMANDS in tests/test_docs.py)"
    args = re.sub(r"\s*\.\.\.$", "", args.strip())
    return " ".join(["medssl", command, args]).strip()


@pytest.mark.parametrize("page", markdown_files(), ids=lambda p: str(p.relative_to(ROOT)))
def test_every_script_command_is_shown_as_a_medssl_command_too(page):
    shown = shown_commands(page.read_text())
    text = "\n".join(shown)
    missing = []
    for command in shown:
        found = SCRIPT_COMMAND.search(command)
        if found and medssl_form(*found.groups()) not in text:
            missing.append(f"{command} -> {medssl_form(*found.groups())}")
    assert not missing, f"{page.relative_to(ROOT)}: no medssl form shown for {missing}"


@pytest.mark.slow
def test_the_medssl_commands_the_pages_show_exist(capsys):
    from medssl.cli import COMMANDS, main
    from medssl.pretrain.methods import method_names

    words_with_help = {"pretrain": [*method_names()], "download": ["dataset", "checkpoint"]}
    helps = set()
    for page in markdown_files():
        for command in shown_commands(page.read_text()):
            for name, word in MEDSSL_COMMAND.findall(command):
                if name.isupper():  # COMMAND, a placeholder
                    continue
                assert name in COMMANDS, f"{page.relative_to(ROOT)}: {command!r}: no command {name!r}"
                if name == "pretrain" and word and not word.startswith("-") and not word.isupper():
                    assert word in [*method_names(), *EXAMPLE_METHODS], f"{page.relative_to(ROOT)}: {command!r}"
                helps.add((name, word) if word in words_with_help.get(name, []) else (name,))
    assert len(helps) >= len(COMMANDS)  # each shown at least once
    for words in sorted(helps):
        assert main([*words, "--help"]) == 0, f"medssl {' '.join(words)} --help failed"
        assert f"usage: medssl {' '.join(words)}" in capsys.readouterr().out


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


@pytest.mark.slow
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


def test_the_readme_states_the_exit_status_rule():
    import signal

    from medssl.exits import COULD_NOT_RUN, FINISHED, SKIPPED, signal_status

    readme = (ROOT / "README.md").read_text()
    table = readme[readme.index("| exit status |"):].split("\n\n")[0]
    rows = dict(re.findall(r"^\| `?([^|`]+?)`? \| ([^|]+) \|$", table, re.M))
    assert rows[str(FINISHED)].startswith("finished") and rows[str(COULD_NOT_RUN)].startswith("could not run")
    assert rows[str(SKIPPED)].startswith("finished, with items skipped")
    assert "128 + signal" in rows and signal_status(signal.SIGTERM) == 143 and signal_status(signal.SIGINT) == 130


def test_the_readme_and_the_method_guide_name_every_registered_method():
    from medssl.pretrain.methods import method_names

    opening = (ROOT / "README.md").read_text().split("\n## ")[0].lower().replace(" ", "").replace("\n", "")
    missing = [name for name in method_names() if name not in opening]
    assert not missing, f"README's opening paragraph does not name {missing}"
    guide = (ROOT / "docs" / "adding-a-method.md").read_text()
    assert set(re.findall(r"^\| `(\w+)` \|", guide, flags=re.M)) == set(method_names())


def bash_blocks(text: str) -> list[str]:
    """The ``bash`` code blocks of a Markdown page, line continuations joined."""
    return [block.replace("\\\n", " ") for block in re.findall(r"```bash\n(.*?)```", text, flags=re.S)]


def test_the_readme_s_resume_and_slurm_recipes_are_what_test_resume_runs():
    """A run resumes by the same command with the same ``--trainer.default_root_dir`` (no
    ``--ckpt_path``); the SLURM script asks for SIGUSR1 ahead of the limit and for a requeue."""
    readme = (ROOT / "README.md").read_text()
    blocks = bash_blocks(readme)
    slurm = next(b for b in blocks if "#SBATCH" in b)
    directives = [line.split()[1] for line in slurm.splitlines() if line.startswith("#SBATCH")]
    assert any(re.fullmatch(r"--signal=(B:)?SIGUSR1@\d+", d) for d in directives) and "--requeue" in directives
    srun = slurm[slurm.index("srun"):]
    assert "--trainer.default_root_dir" in srun and "--ckpt_path" not in srun
    resume = [line.strip() for b in blocks for line in b.splitlines()
              if line.strip().startswith("medssl pretrain") and "--trainer.default_root_dir" in line and "#" in line]
    assert resume and all("same" in line.split("#", 1)[1] for line in resume), resume
    assert "ckpt_path last" not in " ".join(p.read_text() for p in (ROOT / "Pre-Training").glob("*.py"))
