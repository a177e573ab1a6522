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

from mcrepl.adapters.base import ConfigError, RecordError

#: config provider name → cloud name used in the catalogue
CLOUD_OF_PROVIDER = {"dynamodb": "aws", "cosmos": "azure", "gcs": "gcp",
                     "aws": "aws", "azure": "azure", "gcp": "gcp"}
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
        cloud = CLOUD_OF_PROVIDER.get(provider)
        if cloud is None:
            raise ConfigError(f"unknown provider {provider!r}",
                              fix=f"use one of {', '.join(sorted(CLOUD_OF_PROVIDER))}")
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


def home_jurisdiction(value: object, field: str) -> str:
    """The jurisdiction a record-level residency field (an ISO country code) points at.

    Raises :class:`RecordError` (without the value, which may be personal data) when the
    field is not a two-letter country code.
    """
    if not isinstance(value, str) or len(value.strip()) != 2 or not value.strip().isalpha():
        raise RecordError("residency.record-field", "residency field is not an ISO 3166-1 "
                          "alpha-2 country code", field=field)
    return catalogue().jurisdiction_of_country(value)


__all__ = ["ANYWHERE", "CLOUD_OF_PROVIDER", "Catalogue", "RegionInfo", "UnknownRegionError",
           "allowed_in", "catalogue", "home_jurisdiction", "jurisdiction_of",
           "location_jurisdictions", "region_info"]
