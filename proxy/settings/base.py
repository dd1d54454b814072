"""What every settings section shares: forbidden unknown keys, frozen values, strict scalar types, and
the few value types of our own (`HOST:PORT`, URLs). Each type's error says what the value must be, in
the words `load.py` prints after the key path and the value."""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from typing import Annotated, Any
from urllib.parse import urlsplit

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, Strict, WithJsonSchema
from pydantic_core import PydanticCustomError


class Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, validate_default=False)


Int = Annotated[int, Strict()]
Float = Annotated[float, Strict()]  # strict floats still take integers
Str = Annotated[str, Strict()]
Bool = Annotated[bool, Strict()]


def setting(
    default: Any = ...,
    doc: str = "",
    *,
    low: float | None = None,
    high: float | None = None,
    shown: str | None = None,
) -> Any:
    """One setting: its default, its range and its documentation, in one place. `shown` is how the
    reference table writes the default when the number itself reads badly."""
    extra: dict[str, Any] | None = {"x-default-shown": shown} if shown else None
    return Field(default, description=doc, ge=low, le=high, json_schema_extra=extra)


def invalid(why: str) -> PydanticCustomError:
    """A problem with a value; `load.py` prints it as `key: 'value' why`."""
    return PydanticCustomError("invalid", why)


def required(why: str = "") -> PydanticCustomError:
    """A value that must be given; `load.py` prints it as `key: required why`."""
    return PydanticCustomError("required", why)


@dataclass(frozen=True, slots=True)
class HostPort:
    host: str
    port: int

    def __str__(self) -> str:
        return f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"


def _host_port(value: object) -> HostPort:
    if isinstance(value, HostPort):
        return value
    if (isinstance(value, int) and not isinstance(value, bool)) or (
        isinstance(value, str) and value.isdigit()
    ):
        raise invalid(  # `listen: 8265`: which address? YAML also reads it as a number
            f"is a port alone: write HOST:PORT, e.g. '127.0.0.1:{value}' (this machine only) or "
            f"'0.0.0.0:{value}' (every interface, as in the pod)"
        )
    if not isinstance(value, str):
        raise invalid("must be a string")
    host, _, port = value.rpartition(":")
    host = host.strip("[]")
    if not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise invalid("must be HOST:PORT with a port from 1 to 65535")
    return HostPort(host, int(port))


ListenAddress = Annotated[
    HostPort,
    BeforeValidator(_host_port),
    WithJsonSchema({"type": "string", "pattern": r"^(\[[0-9a-fA-F:.]+\]|[^:\[\]]+):[0-9]{1,5}$"}),
]


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def _key_set_url(value: object) -> str:
    if not isinstance(value, str):
        raise invalid("must be a string")
    url = urlsplit(value)
    if not url.hostname or url.scheme not in ("http", "https"):
        raise invalid("must be an https URL")
    if url.scheme == "http" and not is_loopback(url.hostname):
        raise invalid("must be https (plain http is allowed only on loopback)")
    return value


KeySetUrl = Annotated[str, BeforeValidator(_key_set_url), WithJsonSchema({"type": "string", "format": "uri"})]


def _upstream(value: object) -> str:
    if not isinstance(value, str):
        raise invalid("must be a string")
    parts = urlsplit(value)
    if (
        parts.scheme not in ("http", "https")
        or not parts.hostname
        or parts.path not in ("", "/")
        or "?" in value
        or "#" in value
        or parts.username
    ):
        raise invalid("must be http://HOST:PORT (the Ray dashboard, no path)")
    return value.rstrip("/")


UpstreamUrl = Annotated[str, BeforeValidator(_upstream), WithJsonSchema({"type": "string", "format": "uri"})]


def _public_url(value: object) -> str:
    if not isinstance(value, str):
        raise invalid("must be a string")
    shape = "must be https://HOST[:PORT] (where people open the dashboard; no path, query or user)"
    if not value.isascii():
        raise invalid(shape + ": write an international host name in its xn-- form")
    try:
        parts = urlsplit(value)
        parts.port  # noqa: B018 - a bad port raises here
    except ValueError:
        raise invalid(shape) from None
    if (
        parts.scheme not in ("http", "https")
        or not parts.hostname
        or parts.path not in ("", "/")
        or "?" in value
        or "#" in value
        or "@" in parts.netloc
    ):
        raise invalid(shape)
    if parts.scheme == "http" and not is_loopback(parts.hostname):
        raise invalid("must be https (plain http is allowed only on loopback)")
    return value.rstrip("/")


PublicUrl = Annotated[str, BeforeValidator(_public_url), WithJsonSchema({"type": "string", "format": "uri"})]
