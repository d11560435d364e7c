"""Result figures typed into a notebook's Markdown: what tests/test_notebook_prose.py forbids.

A result (an accuracy, an MSE, a speed-up, a time) goes stale with every training run and every machine, so
lessons print it from code, or render Markdown from the checkpoint or data file that holds it
(``display(Markdown(...))``), and assert what the prose claims about it. What may be typed: settings (α = 0.01,
28×28 images, 95% intervals), chance levels (1/N), and the paper's own figures in a sentence that says they are
the paper's.
"""
from __future__ import annotations

import re

# Finn et al. 2017: Table 1 (Omniglot, MiniImagenet, with their 95% intervals) and Table 2 / Figure 3 (sinusoid)
PAPER_FIGURES = {
    "98.7", "0.4", "99.9", "0.1", "95.8", "0.3", "98.9", "0.2",
    "48.70", "1.84", "63.11", "0.92", "48.07", "1.75", "63.15", "0.91", "49.7", "65.2",
    "0.67", "0.38", "0.35", "2.41", "2.23", "2.19",
}
PAPER_WORDS = re.compile(r"\bpaper|\bTable [12]\b|\bFinn\b|\bquoted\b", re.IGNORECASE)

UNIT = r"(?:%|x(?![\w×])|×(?!\s*\d)|\s?ms\b|\s?s\b|\s(?:seconds?|minutes?|min|hours?|h)\b)"
WITH_UNIT = re.compile(rf"(?<![\w.])(\d+(?:[.,]\d+)*)\s?{UNIT}")
DECIMAL = re.compile(r"(?<![\w.])\d+\.\d+(?![\w.])")
RESULT_WORDS = re.compile(r"\b(?:MSE|error|loss|accuracy|scores?|reached|reaches|gave|gives)\b", re.IGNORECASE)
SETTING = re.compile(r"(?:[αβ=≈<>≤≥∈\[,]|lr|rate|step size|steps? of)\s*$")
CODE_OR_MATH = re.compile(r"`[^`]*`|\$\$.*?\$\$|\$[^$\n]*\$|<!--.*?-->|\]\([^)]*\)", re.DOTALL)


def _sentences(text: str) -> list[str]:
    return [s for s in re.split(r"(?<=[.!?:;])\s+(?=[A-Z*(\"])|\n\s*\n|\n\s*[-*|] ", text) if s.strip()]


def typed_figures(markdown: str) -> list[str]:
    """Each result-like figure in `markdown` that is not a setting, a chance level (1/N, in a cell that speaks
    of chance) or the paper's, with its sentence, for the failure message."""
    found = []
    text = re.sub(r"[*_]{1,2}(?=\S)|(?<=\S)[*_]{1,2}", "", CODE_OR_MATH.sub(" ", markdown))  # emphasis marks
    about_chance = bool(re.search(r"\bchance\b|\bguess", text, re.IGNORECASE))
    for sentence in _sentences(text):
        quoting_paper = bool(PAPER_WORDS.search(sentence))
        for match in WITH_UNIT.finditer(sentence):
            number, figure = match.group(1), match.group(0).strip()
            if figure == "95%" and re.match(r"\s*(?:CI|confidence|interval)", sentence[match.end():]):
                continue
            if figure.endswith("%") and about_chance and number in {"20", "5", "50", "25", "10"}:
                continue
            if quoting_paper and number in PAPER_FIGURES:
                continue
            found.append(f"{figure!r} in: {sentence.strip()[:160]}")
        if RESULT_WORDS.search(sentence):
            for match in DECIMAL.finditer(sentence):
                number = match.group(0)
                if quoting_paper and number in PAPER_FIGURES:
                    continue
                if SETTING.search(sentence[: match.start()]):
                    continue
                if WITH_UNIT.match(sentence, match.start()):
                    continue  # already judged above
                found.append(f"{number!r} in: {sentence.strip()[:160]}")
    return found
