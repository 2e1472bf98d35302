"""Visitor location from the IP, with a MaxMind City database when one is configured."""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass

import geoip2.database
import geoip2.errors


@dataclass(frozen=True)
class Location:
    country: str | None = None
    region: str | None = None
    city: str | None = None


NOWHERE = Location()


class GeoLocator:
    """Look IPs up in one opened database; never raises for a bad or unknown IP."""

    def __init__(self, path: str | None):
        self.reader = geoip2.database.Reader(path) if path else None

    def locate(self, ip: str | None) -> Location:
        if self.reader is None or not ip:
            return NOWHERE
        try:
            address = ipaddress.ip_address(ip)
        except ValueError:
            return NOWHERE
        try:
            found = self.reader.city(str(address))
        except (geoip2.errors.AddressNotFoundError, ValueError, TypeError):
            return NOWHERE
        region = found.subdivisions.most_specific.iso_code if found.subdivisions else None
        return Location(found.country.iso_code, region, found.city.name)

    def close(self) -> None:
        if self.reader is not None:
            self.reader.close()
