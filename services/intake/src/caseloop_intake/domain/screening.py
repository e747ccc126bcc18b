"""What screening reads in a report's text: test markers, actionable content, likeness. Pure."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from datetime import timedelta
from itertools import pairwise


@dataclass(frozen=True)
class ScreeningRules:
    """The screening settings, as data (IntakeSettings builds them)."""

    test_markers: tuple[str, ...]
    filler_phrases: tuple[str, ...]
    min_meaningful_chars: int
    duplicate_window: timedelta
    duplicate_similarity: float


def meaningful_text(text: str) -> str:
    """The letters and digits of the text (any script), casefolded: no whitespace, punctuation or symbols."""
    return "".join(character for character in text.casefold() if character.isalnum())


def screening_marker_in(title: str, description: str, markers: tuple[str, ...]) -> str | None:
    """The first screening marker the report carries, or None."""
    # Whitespace is collapsed so that "test  case" or a marker split over a line still matches.
    text = " ".join(f"{title} {description}".casefold().split())
    return next((marker for marker in markers if " ".join(marker.casefold().split()) in text), None)


def why_not_actionable(title: str, description: str, rules: ScreeningRules) -> str | None:
    """Why the report carries nothing to act on, or None when it does."""
    parts = (meaningful_text(title), meaningful_text(description))
    count = sum(len(part) for part in parts)
    if count < rules.min_meaningful_chars:
        return f"title and description carry {count} letters or digits, fewer than {rules.min_meaningful_chars}"
    fillers = {meaningful_text(phrase) for phrase in rules.filler_phrases}
    if all(_is_filler(part, fillers) for part in parts):
        return "title and description carry only filler"
    return None


def _is_filler(part: str, fillers: set[str]) -> bool:
    # One character repeated ("啊啊啊啊", "1111") says nothing either.
    return part == "" or part in fillers or len(set(part)) == 1


def dice_similarity(a: str, b: str) -> float:
    """Character-bigram Dice coefficient of two texts' meaningful characters, from 0 to 1.

    Bigrams suit Chinese, which has no spaces between words; counted as multisets, so a
    repeated phrase counts each time.
    """
    x, y = meaningful_text(a), meaningful_text(b)
    if len(x) < 2 or len(y) < 2:
        return 1.0 if x and x == y else 0.0
    x_pairs = Counter(first + second for first, second in pairwise(x))
    y_pairs = Counter(first + second for first, second in pairwise(y))
    shared = sum((x_pairs & y_pairs).values())
    return 2 * shared / (x_pairs.total() + y_pairs.total())
