"""The generated parts of the documentation: written by ``make docs``, checked by the tests.

It also reads the shell commands the pages show (``shell_blocks``), for the test that runs them.

A generated part sits between ``<!-- generated: NAME -->`` and ``<!-- end: NAME -->`` in a
Markdown file; everything around it is prose. Tables of facts (the variables, measured figures)
are never pasted by hand, so they cannot drift from their source.
"""

from __future__ import annotations

import json
import re
import sys
from collections.abc import Callable
from dataclasses import dataclass

from config.env import reference_table
from harness.project import ROOT

# The serving sections of `make bench` (balance, probe-port, slow-clients), as last published:
# make bench BENCH_ARGS="--only balance,probe-port,slow-clients --json docs/measurements/serving.json"
SERVING_MEASUREMENTS = "docs/measurements/serving.json"
# The scaling section of `make bench` (HAProxy, replicas, PgBouncer, workers), as last published:
# make bench BENCH_ARGS="--only scaling --json docs/measurements/scaling.json"
SCALING_MEASUREMENTS = "docs/measurements/scaling.json"
# The metrics section of `make bench`, as last published:
# make bench BENCH_ARGS="--only metrics --json docs/measurements/metrics.json"
METRICS_MEASUREMENTS = "docs/measurements/metrics.json"


def markdown_table(rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(rows[0]) + " |", "|" + "---|" * len(rows[0])]
    lines += ["| " + " | ".join(cell.replace("|", "\\|") for cell in row) + " |" for row in rows[1:]]
    return "\n".join(lines) + "\n"


def bench_figures(path: str) -> str:
    """The verdicts and tables of the bench run saved at ``path``, with the machine and its load."""
    run = json.loads((ROOT / path).read_text())
    machine = run["machine"]
    start, end = machine["loadavg_start"], machine["loadavg_end"]
    lines = [
        f"Measured {run['date'][:16].replace('T', ' ')} UTC by `{run['command']}` on {machine['cpus']} CPUs "
        f"({machine['cpu_model']}), gunicorn {machine['gunicorn']}, Python {machine['python']}; load average "
        f"{start[0]:.2f} at the start, {end[0]:.2f} at the end ({run['elapsed_s'] / 60:.1f} min). "
        f"Source: `{path}`.\n",
        "\n",
        markdown_table(
            [
                ["area", "target", "measured", "verdict"],
                *[
                    [
                        row["area"],
                        row["target"],
                        row["measured"],
                        row["verdict"].upper() if row["verdict"] != "info" else "-",
                    ]
                    for row in run["rows"]
                ],
            ]
        ),
    ]
    for title, table in run["tables"].items():
        lines += ["\n", f"**{title[0].upper()}{title[1:]}**\n", "\n", markdown_table(table)]
    return "".join(lines)


def _verdict(verdict: str) -> str:
    return "-" if verdict == "info" else verdict.upper()


# (file, part) -> what writes it.
GENERATORS: dict[tuple[str, str], Callable[[], str]] = {
    ("docs/configuration.md", "variables"): reference_table,
    ("docs/performance.md", "serving"): lambda: bench_figures(SERVING_MEASUREMENTS),
    ("docs/scaling.md", "measured"): lambda: bench_figures(SCALING_MEASUREMENTS),
    ("docs/metrics.md", "measured"): lambda: bench_figures(METRICS_MEASUREMENTS),
}


def splice(text: str, part: str, content: str) -> str:
    """``text`` with the generated ``part`` replaced by ``content``; ``ValueError`` without its markers."""
    pattern = re.compile(rf"(<!-- generated: {re.escape(part)} -->\n).*?(<!-- end: {re.escape(part)} -->)", re.S)
    if not pattern.search(text):
        raise ValueError(f"no generated part {part!r}")
    return pattern.sub(lambda match: match.group(1) + content + match.group(2), text, count=1)


def regenerated(path: str) -> str:
    """The file at ``path`` with each of its generated parts written anew."""
    text = (ROOT / path).read_text()
    for (file, part), generate in GENERATORS.items():
        if file == path:
            text = splice(text, part, generate())
    return text


def main() -> int:
    """``python -m harness.docs``: rewrite every generated part in place."""
    for path in sorted({file for file, _ in GENERATORS}):
        target = ROOT / path
        text = regenerated(path)
        if text != target.read_text():
            target.write_text(text)
            print(f"updated {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())


# --- the shell commands the docs show ---------------------------------------------------------

SHELL_LANGUAGES = ("console", "sh", "shell", "bash")
_FENCE = re.compile(r"^```(\S*)\s*$")
_ANNOTATION = re.compile(r"^<!-- docs-test: (.+?) -->$")


@dataclass(frozen=True)
class Step:
    """One shell command and, in a ``console`` block, the output the page shows for it."""

    command: str
    expected: tuple[str, ...] | None  # None: the page shows no output to compare


@dataclass(frozen=True)
class Block:
    page: str  # relative to the project root
    line: int  # of the opening fence
    annotation: str  # "" (run by tests/test_docs.py), "run-by FILE ...", "restart"
    steps: tuple[Step, ...]

    @property
    def run_by(self) -> tuple[str, ...]:
        words = self.annotation.split()
        return tuple(words[1:]) if words[:1] == ["run-by"] else ()


def pages() -> list[str]:
    """The README and every page under docs/, README first."""
    return ["README.md", *sorted(str(path.relative_to(ROOT)) for path in (ROOT / "docs").glob("*.md"))]


def shell_blocks(page: str) -> list[Block]:
    """Every fenced shell block of ``page``, with the annotation on the line before it, if any."""
    lines = (ROOT / page).read_text().splitlines()
    blocks, index = [], 0
    while index < len(lines):
        fence = _FENCE.match(lines[index])
        if not fence:
            index += 1
            continue
        end = next(i for i in range(index + 1, len(lines)) if lines[i].startswith("```"))
        if fence.group(1) in SHELL_LANGUAGES:
            previous = _ANNOTATION.match(lines[index - 1]) if index else None
            body = lines[index + 1 : end]
            steps = _console_steps(body) if fence.group(1) == "console" else _script_steps(body)
            blocks.append(Block(page, index + 1, previous.group(1) if previous else "", steps))
        index = end + 1
    return blocks


def _joined(lines: list[str]) -> list[str]:
    """Lines with their ``\\`` continuations joined, as the shell reads them."""
    joined: list[str] = []
    for line in lines:
        if joined and joined[-1].endswith("\\"):
            joined[-1] = joined[-1][:-1] + "\n" + line
        else:
            joined.append(line)
    return joined


def _console_steps(body: list[str]) -> tuple[Step, ...]:
    steps: list[tuple[str, list[str]]] = []
    for line in _joined(body):
        if line.startswith("$ "):
            steps.append((line[2:], []))
        elif steps:
            steps[-1][1].append(line)
        else:
            raise ValueError(f"console block output before any `$ ` command: {line!r}")
    return tuple(Step(command, tuple(output) if output else None) for command, output in steps)


def _script_steps(body: list[str]) -> tuple[Step, ...]:
    commands = [line for line in _joined(body) if line.strip() and not line.lstrip().startswith("#")]
    return tuple(Step(command, None) for command in commands)


def matches(expected: tuple[str, ...], actual: str) -> bool:
    """Whether ``actual`` reads as the page shows it.

    Runs of spaces count as one (tables align to their widest cell). ``...`` inside a line
    stands for any text (a latency, an id); a line that is only ``...`` for any number of lines.
    """

    def pattern(line: str) -> str:
        if line.strip() == "...":
            return r"(?:[^\n]*\n)*?"
        parts = [re.escape(" ".join(part.split())) for part in line.split("...")]
        return r"[^\n]*?".join(parts).replace(r"\ ", " +") + r" *\n"

    squeezed = "".join(" ".join(line.split()) + "\n" for line in actual.splitlines())
    return re.fullmatch("".join(pattern(line) for line in expected), squeezed) is not None
