"""README.md and docs/ stay true to the code: relative links reach a file, every
``python tools/<script>.py`` command of a ```bash block names a script that exists and only
flags its argparse accepts, and the README stays a short front door. Fast: no training, the
scripts are only asked for ``--help``."""
import functools
import re
from pathlib import Path

import pytest

from helpers import REPO, tool_main

ROOT = Path(REPO)
README = ROOT / 'README.md'
DOCS = ROOT / 'docs'
PAGES = [README, DOCS / 'README.md', *sorted(set(DOCS.glob('*.md')) - {DOCS / 'README.md'})]
README_MAX_LINES = 220

FENCE = re.compile(r'^\s*```(\S*)')
LINK = re.compile(r'\[[^\]]*\]\(([^)\s]+)\)')
FLAG = re.compile(r'(?<![\w-])--[A-Za-z0-9][\w-]*')
# `python tools/x.py …` or `.venv/bin/python3 tools/x.py …`; not MMPretrain's `$MIM/x.py`
TOOL = re.compile(r'(?:^|[\s/\'"])python[\d.]*\s+(tools/[\w/.-]+\.py)\b(.*)')
SHELL_SCRIPT = re.compile(r'(?<![\w$/.-])(tools/[\w/.-]+\.sh)\b')
SEPARATOR = re.compile(r'&&|\|\||[;|]')


def relative(path: Path) -> str:
    return str(path.relative_to(ROOT))


def page_lines(page: Path):
    """``(line number, text, fence language or None outside code blocks)`` for each line."""
    language = None
    for number, text in enumerate(page.read_text(encoding='utf-8').splitlines(), 1):
        fence = FENCE.match(text)
        if fence:
            language = None if language is not None else fence.group(1)
            continue
        yield number, text, language


def bash_commands(page: Path):
    """``(line number, command)``: the lines of the page's ```bash blocks, joined across
    ``\\`` continuations, comments dropped."""
    start, parts = None, []
    for number, text, language in page_lines(page):
        if language != 'bash':
            continue
        start = start or number
        parts.append(re.sub(r'(^|\s)#.*', '', text).rstrip())
        if parts[-1].endswith('\\'):
            parts[-1] = parts[-1][:-1]
            continue
        yield start, ' '.join(parts)
        start, parts = None, []


def all_bash_commands():
    """``(page, line number, command)`` of the ```bash blocks of every page."""
    for page in PAGES:
        if page.exists():
            for number, command in bash_commands(page):
                yield relative(page), number, command


def tool_commands():
    """``(page, line, script, flags)`` of every ``python tools/<script>.py`` command."""
    for page, number, command in all_bash_commands():
        for segment in SEPARATOR.split(command):
            found = TOOL.search(segment)
            if found:
                yield page, number, found.group(1), FLAG.findall(found.group(2))


def shell_scripts():
    """``(page, line, script)`` of every ``tools/*.sh`` a ```bash block runs."""
    for page, number, command in all_bash_commands():
        for script in SHELL_SCRIPT.findall(command):
            yield page, number, script


@functools.lru_cache(maxsize=None)
def accepted_flags(script: str) -> frozenset:
    """The option strings of ``script``'s argparse, read from its ``--help`` (run in this
    process, as the tests of the tools do)."""
    status, out, err = tool_main(script[len('tools/'):], '--help')
    assert status == 0, f'{script} --help exited with {status}: {err[-2000:]}'
    parts = re.split(r'^(?:optional arguments|options):$', out, maxsplit=1, flags=re.MULTILINE)
    assert len(parts) == 2, f'{script} --help printed no options section:\n{out[-2000:]}'
    flags = set()
    for line in parts[1].splitlines():
        head = re.match(r' {2}(-\S.*?)(?: {2,}|$)', line)
        if head:
            flags.update(FLAG.findall(head.group(1)))
    return frozenset(flags)


@pytest.mark.parametrize('page', PAGES, ids=relative)
def test_relative_links_reach_a_file(page):
    assert page.exists(), f'{relative(page)} is missing'
    broken = []
    for number, text, language in page_lines(page):
        if language is not None:
            continue
        for target in LINK.findall(text):
            path = target.split('#', 1)[0]
            if not path or re.match(r'^[a-z][a-z0-9+.-]*:', path):
                continue  # an anchor on this page, or a URL
            if not (page.parent / path).exists():
                broken.append(f'{relative(page)}:{number}: link to {target} (no such file)')
    assert not broken, '\n'.join(broken)


def test_readme_and_index_link_every_docs_page():
    pages = sorted(relative(page) for page in DOCS.glob('*.md') if page.name != 'README.md')
    readme, index = README.read_text(encoding='utf-8'), (DOCS / 'README.md').read_text(
        encoding='utf-8')
    missing = [f'README.md does not link {page}' for page in pages if f'({page})' not in readme]
    missing += [f'docs/README.md does not link {page}' for page in pages
                if f'({page[len("docs/"):]})' not in index]
    assert not missing, '\n'.join(missing)


@pytest.mark.parametrize('page, line, script, flags', [
    pytest.param(*command, id=f'{command[0]}:{command[1]}:{command[2]}')
    for command in tool_commands()])
def test_tool_commands_use_real_scripts_and_flags(page, line, script, flags):
    assert (ROOT / script).is_file(), f'{page}:{line}: {script} does not exist'
    unknown = sorted(set(flags) - accepted_flags(script))
    assert not unknown, (f'{page}:{line}: {script} does not accept {", ".join(unknown)} '
                         f'(it takes {", ".join(sorted(accepted_flags(script)))})')


def test_shell_scripts_exist():
    missing = [f'{page}:{line}: {script} does not exist'
               for page, line, script in shell_scripts() if not (ROOT / script).is_file()]
    assert not missing, '\n'.join(missing)


def test_readme_is_a_front_door():
    lines = len(README.read_text(encoding='utf-8').splitlines())
    assert lines <= README_MAX_LINES, (f'README.md has {lines} lines, at most '
                                       f'{README_MAX_LINES}: move detail into docs/')
