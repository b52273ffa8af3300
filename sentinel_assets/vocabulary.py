"""The fleet's vocabulary: its regions, device models (with their firmware) and board revisions.

A real fleet's vocabulary is its own, so it comes from a TOML file, not from code: the file
`SENTINEL_FLEET_CONFIG` names, or the packaged `sentinel_assets/fleet.toml` (the simulator's
fleet) when that is unset. `contracts` loads it once, at import, and exports it as
`REGION_TABLE`, `REGIONS`, `MODELS`, ... for everything else.

Why this one setting is read at import time, when every other setting is read when a command
or a run starts: the Pandera contracts name the allowed regions and models in their class
bodies, and Dagster's region partitions (`defs/partitions.py`) are built when the definitions
are imported, so the vocabulary must be known before either module exists. Adding a region is
therefore a change of this file (and a restart), never a change of code.

A file that is missing, is not TOML, or breaks a rule below raises `FleetVocabularyError`
(a `ValueError`) whose message is one sentence naming the file and the field.
"""

from __future__ import annotations

import os
import re
import tomllib
from collections import Counter
from collections.abc import Iterable
from functools import cache
from pathlib import Path
from typing import Annotated

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    StrictInt,
    StrictStr,
    ValidationError,
    model_validator,
)

FLEET_CONFIG_ENV = "SENTINEL_FLEET_CONFIG"
DEFAULT_FLEET_FILE = Path(__file__).with_name("fleet.toml")

# A region's name becomes a folder (`region=<name>`), a Dagster partition key and a value in SQL
# text, so it is kept to characters that need no quoting anywhere.
REGION_NAME_PATTERN = r"^[a-z0-9]+(?:-[a-z0-9]+)*$"
REGION_CODE_PATTERN = r"^[A-Z]{3}$"  # the <code> of device ids SN-<code>-<8 digits>
NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._-]*$"  # models and board revisions
FIRMWARE_PATTERN = r"^[0-9]+\.[0-9]+\.[0-9]+$"
# record_id = region number x 10^12 + sequence (< 10^12) must fit a signed 64-bit integer.
MAX_REGION_NUMBER = (2**63 - 1) // 10**12 - 1
MAX_NAME_LENGTH = 64


class FleetVocabularyError(ValueError):
    """The fleet file cannot be used; the message is one sentence naming the file and field."""


def _matching(pattern: str, what: str):
    def check(value: str) -> str:
        if len(value) > MAX_NAME_LENGTH or not re.fullmatch(pattern, value):
            raise ValueError(f"{value!r} is not {what}")
        return value

    return AfterValidator(check)


def _faker_locale(value: str) -> str:
    from faker.config import AVAILABLE_LOCALES  # Faker draws the region's site names

    if value not in AVAILABLE_LOCALES:
        raise ValueError(f"{value!r} is not a Faker locale (for example en_US, de_DE, ja_JP)")
    return value


RegionName = Annotated[
    StrictStr,
    _matching(REGION_NAME_PATTERN, "lower-case letters and digits joined by single dashes"),
]
Name = Annotated[StrictStr, _matching(NAME_PATTERN, "letters, digits, '.', '_' or '-'")]
FirmwareVersion = Annotated[StrictStr, _matching(FIRMWARE_PATTERN, "a version x.y.z")]
Bias = Annotated[float, Field(ge=0, description="Multiplier on the simulator's failure odds.")]


class RegionEntry(BaseModel):
    """One region of the fleet: a partition of every fleet table."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    name: RegionName
    code: Annotated[StrictStr, _matching(REGION_CODE_PATTERN, "three upper-case letters")]
    number: Annotated[StrictInt, Field(ge=0, le=MAX_REGION_NUMBER)]
    site_locale: Annotated[StrictStr, AfterValidator(_faker_locale)]
    failure_bias: Bias = 1.0


class ModelEntry(BaseModel):
    """A device model and the campaign's upgrade path for it."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    name: Name
    campaign_target: FirmwareVersion
    previous_images: Annotated[tuple[FirmwareVersion, ...], Field(min_length=1)]
    failure_bias: Bias = 1.0


def _repeated(values: Iterable[object]) -> list[object]:
    return [value for value, count in Counter(values).items() if count > 1]


class FleetVocabulary(BaseModel):
    """The whole fleet file: at least one region, model and board revision, none repeated."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    regions: Annotated[tuple[RegionEntry, ...], Field(min_length=1)]
    models: Annotated[tuple[ModelEntry, ...], Field(min_length=1)]
    hardware_revs: Annotated[tuple[Name, ...], Field(min_length=1)]

    @model_validator(mode="after")
    def _nothing_repeated(self) -> FleetVocabulary:
        lists = {
            "regions.name": [r.name for r in self.regions],
            "regions.code": [r.code for r in self.regions],
            "regions.number": [r.number for r in self.regions],
            "models.name": [m.name for m in self.models],
            "hardware_revs": list(self.hardware_revs),
        }
        for field, values in lists.items():
            repeated = _repeated(values)
            if repeated:
                raise ValueError(
                    f"{field} must be unique, but {', '.join(map(repr, repeated))} "
                    f"{'is' if len(repeated) == 1 else 'are'} used more than once"
                )
        return self


def _location(loc: tuple[int | str, ...]) -> str:
    """`('regions', 8, 'name')` -> `regions[8].name`."""
    text = ""
    for part in loc:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else str(part))
    return text


def _problems(error: ValidationError) -> str:
    found = []
    for item in error.errors():
        message = item["msg"].removeprefix("Value error, ")
        where = _location(item["loc"])
        found.append(f"{where} {message}" if where else message)
    return "; ".join(found)


def load(path: Path, *, setting: str | None = None) -> FleetVocabulary:
    """The validated vocabulary of the fleet file at `path` (`setting` names where the path
    came from, for the error message)."""
    where = f"{path} ({setting})" if setting else str(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise FleetVocabularyError(f"Fleet file {where} does not exist.") from None
    except (OSError, UnicodeDecodeError) as error:
        reason = error.strerror if isinstance(error, OSError) else "it is not UTF-8 text"
        raise FleetVocabularyError(f"Fleet file {where} cannot be read: {reason}.") from None
    try:
        raw = tomllib.loads(text)
    except tomllib.TOMLDecodeError as error:
        raise FleetVocabularyError(f"Fleet file {where} is not valid TOML: {error}.") from None
    try:
        return FleetVocabulary.model_validate(raw)
    except ValidationError as error:
        raise FleetVocabularyError(f"Fleet file {where} is invalid: {_problems(error)}.") from None


@cache
def configured() -> FleetVocabulary:
    """The vocabulary of the file `SENTINEL_FLEET_CONFIG` names, or the packaged default;
    loaded once per process."""
    configured_path = os.environ.get(FLEET_CONFIG_ENV, "").strip()
    if configured_path:
        return load(Path(configured_path).expanduser(), setting=FLEET_CONFIG_ENV)
    return load(DEFAULT_FLEET_FILE)
