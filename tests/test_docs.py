"""Every shell command the README and docs/ show runs, exactly as written, and prints what they show.

The commands run on a newcomer's machine (``harness.sandbox``): a fresh network namespace with
PostgreSQL and Redis on their standard ports, a copy of the project and ``make run`` serving on
127.0.0.1:8000. A block the sandbox cannot run (``make test`` itself, an interactive prompt, a
Docker engine) names, in a ``<!-- docs-test: run-by FILE ... -->`` line just above it, the test
or script that runs it; that file must contain each of its commands verbatim.
"""

from __future__ import annotations

import pytest

from harness.docs import Block, matches, pages, shell_blocks
from harness.project import ROOT
from harness.sandbox import Sandbox

pytestmark = pytest.mark.slow

BLOCKS = [block for page in pages() for block in shell_blocks(page)]
ANNOTATIONS = ("", "restart")  # what the sandbox runs; "run-by ..." is run elsewhere


def _id(block: Block) -> str:
    return f"{block.page}:{block.line}"


def test_every_page_is_read() -> None:
    assert "README.md" in pages()
    assert any(block.page == "README.md" for block in BLOCKS)


@pytest.mark.parametrize("block", [b for b in BLOCKS if b.run_by], ids=_id)
def test_blocks_run_elsewhere_name_a_file_that_runs_them(block: Block) -> None:
    for command in (step.command for step in block.steps):
        runners = [ROOT / name for name in block.run_by]
        assert all(runner.is_file() for runner in runners), f"{block.run_by} do not all exist"
        assert any(command in runner.read_text() for runner in runners), (
            f"{_id(block)}: no file of {block.run_by} runs {command!r} as written"
        )


@pytest.mark.parametrize("block", BLOCKS, ids=_id)
def test_every_annotation_is_known(block: Block) -> None:
    assert block.annotation in ANNOTATIONS or block.run_by, f"{_id(block)}: unknown annotation {block.annotation!r}"


@pytest.mark.parametrize("block", [b for b in BLOCKS if not b.run_by], ids=_id)
def test_the_commands_run_as_the_page_shows(sandbox: Sandbox, block: Block) -> None:
    if block.annotation == "restart":  # the page just changed .env, and says to restart `make run`
        sandbox.restart_server()
    results = sandbox.run_steps([step.command for step in block.steps])
    for step, (output, status) in zip(block.steps, results, strict=True):
        if step.expected is None:
            assert status == 0, f"`{step.command}` exited {status}:\n{output}"
        else:
            assert matches(step.expected, output), (
                f"`{step.command}` printed:\n{output}\n\n{block.page} shows:\n" + "\n".join(step.expected)
            )
