"""The README documents every subcommand and where the tests' data comes from."""

from __future__ import annotations

from pathlib import Path

README = Path(__file__).resolve().parents[2] / "README.md"


def command_line_section() -> str:
    text = README.read_text(encoding="utf-8")
    return text.split("## Command line", 1)[1].split("\n## ", 1)[0]


def test_command_line_section_lists_every_subcommand():
    section = command_line_section()
    for command in ("headscope dashboard", "headscope capture", "headscope sinks", "headscope act search",
                    "headscope act eval", "headscope rhythm traces", "headscope rhythm analyse"):
        assert command in section, command
    for option in ("--bbh-dir", "--limit", "--tasks", "--cache", "--n-calibration", "--n-test", "--problems",
                   "--max-new-tokens", "--text-traces", "--band", "--paper-layers", "--report"):
        assert option in section, option


def test_readme_says_what_reads_shared():
    text = README.read_text(encoding="utf-8")
    assert "../shared" in text and "HEADSCOPE_BBH_DIR" in text and "lukaemon/bbh" in text
