"""``headscope capture``'s summary says which prompt it shows and why a share can be nan."""

from __future__ import annotations

from probe.cli import main


def test_one_token_prompt_explains_nan(tiny_folder, tmp_path, capsys):
    assert main(["capture", "--model", str(tiny_folder), "--prompt", "Hi", "--out", str(tmp_path / "rec")]) == 0
    printed = capsys.readouterr().out
    assert "nan" in printed
    assert "first-token share is undefined for a one-token prompt" in printed


def test_longer_prompt_has_no_nan_note(tiny_folder, tmp_path, capsys):
    assert main(["capture", "--model", str(tiny_folder), "--prompt", "Hello there, general",
                 "--out", str(tmp_path / "rec")]) == 0
    assert "undefined" not in capsys.readouterr().out


def test_prompts_file_says_which_prompt_is_summarised(tiny_folder, tmp_path, capsys):
    prompts = tmp_path / "p.txt"
    prompts.write_text("Hello there, general\nWhen Mary and John went out\nA third one here\n")
    assert main(["capture", "--model", str(tiny_folder), "--prompts-file", str(prompts),
                 "--out", str(tmp_path / "rec")]) == 0
    assert "summary of prompt 0 of 3 (the record holds all 3)" in capsys.readouterr().out


def test_single_prompt_has_no_which_prompt_line(tiny_folder, tmp_path, capsys):
    assert main(["capture", "--model", str(tiny_folder), "--prompt", "Hello there, general",
                 "--out", str(tmp_path / "rec")]) == 0
    assert "summary of prompt" not in capsys.readouterr().out
