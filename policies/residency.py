"""Where data lives: the region catalogue and the jurisdiction checks built on it.

The catalogue (``policies/data/regions.yaml``) maps every current AWS, Azure and GCP
region to the countries it stores data in; a country maps to a jurisdiction (``EU``
covers the EU and EEA). Residency rules are written in jurisdictions, so a rule like
"pii may live only in EU" keeps holding when a cloud opens a new EU region.

Unknown regions are an error, never a guess: a typo in a region name must not make
data silently "allowed" anywhere.
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass
from functools import lru_cache
from importlib import resources
from typing import Iterable, Mapping

import yaml
from iso3166 import countries_by_alpha2

from mcrepl.adapters import adapter_spec
from mcrepl.adapters.base import ConfigError, RecordError

#: cloud names of the catalogue (a location's provider maps to one through its adapter's
#: spec, ``AdapterSpec.cloud``: dynamodb and s3 → aws, cosmos → azure, gcs → gcp)
CLOUD_OF_PROVIDER = {"aws": "aws", "azure": "azure", "gcp": "gcp"}
ANYWHERE = "*"
CATALOGUE_FILE = "policies/data/regions.yaml"


@dataclass(frozen=True)
class RegionInfo:
    """One catalogue entry: the countries a location may store data in, and their jurisdictions."""

    cloud: str
    region: str
    countries: frozenset[str]
    jurisdictions: frozenset[str]
    place: str

    @property
    def jurisdiction(self) -> str:
        """The jurisdiction, or ``A+B`` for a multi-region spanning several."""
        return "+".join(sorted(self.jurisdictions))


class UnknownRegionError(ConfigError):
    """A region the catalogue does not know; names it, suggests close names and the fix."""


@dataclass(frozen=True)
class Catalogue:
    """The parsed region catalogue."""

    regions: Mapping[str, Mapping[str, RegionInfo]]
    country_jurisdiction: Mapping[str, str]
    jurisdiction_names: Mapping[str, str]

    def jurisdiction_of_country(self, country: str) -> str:
        """``DE`` → ``EU``; a country not in a multi-country jurisdiction is its own."""
        code = country.strip().upper()
        return self.country_jurisdiction.get(code, code)

    def known_jurisdictions(self) -> set[str]:
        """Every jurisdiction a rule may name: the named ones and every country code used."""
        names = set(self.jurisdiction_names)
        for per_cloud in self.regions.values():
            for info in per_cloud.values():
                names |= info.jurisdictions
        return names

    def info(self, provider: str, region: str) -> RegionInfo:
        """The entry for ``provider`` (config or cloud name) and ``region``, or an error with the fix."""
        cloud = CLOUD_OF_PROVIDER.get(provider) or cloud_of_adapter(provider)
        if cloud is None or cloud not in self.regions:
            raise ConfigError(f"unknown provider {provider!r} (or its adapter's cloud {cloud!r} has no "
                              "region catalogue)", fix=f"use a provider of {', '.join(sorted(CLOUD_OF_PROVIDER))}")
        known = self.regions[cloud]
        entry = known.get(region.lower() if cloud == "gcp" else region)
        if entry is None:
            close = difflib.get_close_matches(region, list(known), n=3)
            hint = f"did you mean {' or '.join(close)}? " if close else ""
            raise UnknownRegionError(
                f"region {region!r} is not a known {cloud} region", path=f"{provider}:{region}",
                fix=f"{hint}check the spelling, or add the region with its country to "
                    f"{CATALOGUE_FILE} if {cloud} opened it recently")
        return entry


def cloud_of_adapter(provider: str) -> str | None:
    """The cloud an adapter's locations belong to (its spec says), or ``None`` for an unknown provider."""
    try:
        return adapter_spec(provider).cloud
    except ConfigError:
        return None


def _parse(raw: Mapping) -> Catalogue:
    country_j: dict[str, str] = {}
    names: dict[str, str] = {}
    for code, spec in raw["jurisdictions"].items():
        names[code] = spec["name"]
        for country in spec["countries"]:
            country_j[str(country)] = code
    regions: dict[str, dict[str, RegionInfo]] = {}
    for cloud, entries in raw["regions"].items():
        table: dict[str, RegionInfo] = {}
        for region, spec in entries.items():
            countries = frozenset(str(c) for c in (spec.get("countries") or [spec["country"]]))
            table[str(region)] = RegionInfo(cloud, str(region), countries,
                                            frozenset(country_j.get(c, c) for c in countries),
                                            str(spec.get("place", "")))
        regions[cloud] = table
    return Catalogue(regions, country_j, names)


@lru_cache(maxsize=1)
def catalogue() -> Catalogue:
    """The packaged catalogue (read once per process)."""
    text = resources.files("mcrepl.policies").joinpath("data/regions.yaml").read_text("utf-8")
    return _parse(yaml.safe_load(text))


def region_info(provider: str, region: str) -> RegionInfo:
    """Catalogue entry for a location; raises :class:`UnknownRegionError` for unknown regions."""
    return catalogue().info(provider, region)


def jurisdiction_of(provider: str, region: str) -> str:
    """The jurisdiction of ``provider:region`` (``dynamodb``/``aws``, ``cosmos``/``azure``, ``gcs``/``gcp``)."""
    return region_info(provider, region).jurisdiction


def location_jurisdictions(location: str) -> frozenset[str]:
    """Jurisdictions of a ``provider:region`` replica name."""
    provider, _, region = location.partition(":")
    return region_info(provider, region).jurisdictions


def allowed_in(jurisdictions: Iterable[str], allowed: Iterable[str]) -> bool:
    """True when every jurisdiction a location may store data in is allowed (``*``: anywhere)."""
    allow = set(allowed)
    return ANYWHERE in allow or set(jurisdictions) <= allow


#: Codes records commonly carry that are not ISO 3166-1 alpha-2, mapped to the ISO code
#: they mean. ``EL`` is the code EU institutions use for Greece (ISO: ``GR``); ``UK`` is
#: "exceptionally reserved" in ISO 3166-1 for the United Kingdom, whose code is ``GB``.
#: Both mappings send the record to the same jurisdiction its ISO code would (EU, UK),
#: so accepting them never widens where a record may go.
COUNTRY_ALIASES = {"EL": "GR", "UK": "GB"}


def country_code(value: object) -> str | None:
    """The ISO 3166-1 alpha-2 code ``value`` names (``" de"`` → ``DE``, ``EL`` → ``GR``),
    or ``None`` when it names none (``XX``, ``Germany``, ``49``, a missing value).

    Only codes assigned in ISO 3166-1 count (the ``iso3166`` package's table, which also
    carries ``XK`` for Kosovo); user-assigned codes (``XX``, ``ZZ``, ``AA``) do not.
    """
    if not isinstance(value, str):
        return None
    code = value.strip().upper()
    code = COUNTRY_ALIASES.get(code, code)
    return code if code in countries_by_alpha2 else None


def home_jurisdiction(value: object, field: str) -> str:
    """The jurisdiction a record-level residency field (an ISO country code) points at.

    Raises :class:`RecordError` (without the value, which may be personal data) when the
    field is missing or not an assigned ISO 3166-1 alpha-2 code (see :func:`country_code`).
    """
    code = country_code(value)
    if code is None:
        raise RecordError("residency.record-field", "residency field is missing or not an ISO 3166-1 "
                          "alpha-2 country code", field=field)
    return catalogue().jurisdiction_of_country(code)


def jurisdiction_problem(name: str) -> str | None:
    """Why ``name`` cannot be used as a jurisdiction in the config (``None``: it can).

    Rules are written in jurisdictions (``EU``, ``UK``, ``US``, or a country that is its
    own jurisdiction, ``"*"`` for anywhere). A country inside a larger jurisdiction
    (``DE``, ``EL``) is refused with the jurisdiction to write instead, and anything that
    is not an assigned ISO 3166-1 code (``XX``) is refused outright.
    """
    cat = catalogue()
    if name == ANYWHERE or name in cat.known_jurisdictions():
        return None
    code = country_code(name)
    if code is None:
        return f"{name!r} is neither a jurisdiction nor an ISO 3166-1 alpha-2 country code"
    home = cat.jurisdiction_of_country(code)
    if home != name and home in cat.known_jurisdictions():
        alias = f" ({name} means {code})" if name.strip().upper() != code else ""
        return f"{name!r} is a country in jurisdiction {home}{alias}; rules name jurisdictions: write {home}"
    return f"{name!r} is a country with no region in {CATALOGUE_FILE}, so no replica can be there"


__all__ = ["ANYWHERE", "CLOUD_OF_PROVIDER", "COUNTRY_ALIASES", "Catalogue", "RegionInfo", "UnknownRegionError",
           "allowed_in", "catalogue", "country_code", "home_jurisdiction", "jurisdiction_of", "jurisdiction_problem",
           "location_jurisdictions", "region_info"]
