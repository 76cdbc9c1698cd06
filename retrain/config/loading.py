"""``load_settings()``: ``Settings()``, with any mistake in ``RETRAIN_*`` or ``retrain.toml`` as one
``ConfigError`` line that names the setting and never shows a secret's value.

A pydantic ``ValidationError`` prints every offending input; for a token or an HMAC secret that
is the secret itself. Here a value is shown only for fields that are not secret, truncated, with
any password in a URL masked.
"""

from __future__ import annotations

import difflib
import os
import re
import tomllib
from typing import Any, get_args

from pydantic import SecretBytes, SecretStr, ValidationError
from pydantic_settings import SettingsError

from registry.errors import ConfigError
from retrain.config.settings import Settings

__all__ = ["describe_settings_error", "is_secret_setting", "load_settings"]

TOML_FILE = "retrain.toml"
_SECRET_SUFFIXES = ("_token", "_secret", "_password", "_key", "_credentials")
_SECRET_TYPES = (SecretStr, SecretBytes)
_URL_PASSWORD = re.compile(r"(://[^/@:\s]*:)[^/@\s]*@")
_SHOWN_CHARS = 40


def load_settings() -> Settings:
    """The settings from the environment and ``retrain.toml``; a mistake is a ``ConfigError``."""
    try:
        return Settings()
    except ValidationError as exc:
        raise ConfigError(describe_settings_error(exc)) from None
    except SettingsError as exc:  # a value the environment source could not even parse
        raise ConfigError(f"settings: {exc}; fix the RETRAIN_* variable") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{TOML_FILE} is not valid TOML ({exc}): fix it or remove it") from None
    except UnicodeDecodeError:
        raise ConfigError(f"{TOML_FILE} is not UTF-8 text: fix it or remove it") from None
    except OSError as exc:
        raise ConfigError(
            f"{TOML_FILE} cannot be read ({exc.strerror}): fix it or remove it"
        ) from None


def describe_settings_error(exc: ValidationError) -> str:
    """One line naming the first bad setting, where it came from and what is wrong with it."""
    errors = exc.errors(include_url=False)
    first = errors[0]
    field = str(first["loc"][0]) if first["loc"] else ""
    more = f" (and {len(errors) - 1} more)" if len(errors) > 1 else ""
    if first["type"] == "extra_forbidden":  # only a file can name an unknown setting
        close = difflib.get_close_matches(field, list(Settings.model_fields), n=1)
        hint = f"did you mean {close[0]!r}?" if close else "see the settings table in README.md"
        return f"setting {field!r} in {TOML_FILE}: no such setting; {hint}{more}"
    msg = str(first["msg"])
    problem = msg[:1].lower() + msg[1:]
    if not is_secret_setting(field) and "input" in first:
        problem += f" (got {_shown(first['input'])})"
    if not field:
        return f"settings: {problem}{more}"
    env_name = f"RETRAIN_{field.upper()}"
    if env_name in {name.upper() for name in os.environ}:
        return f"setting {env_name}: {problem}; fix or unset the variable{more}"
    return f"setting {field} in {TOML_FILE}: {problem}; fix it there{more}"


def is_secret_setting(field: str) -> bool:
    """Whether a setting holds a secret: a ``SecretStr`` field, ``*_token`` or ``*_secret``."""
    if field.lower().endswith(_SECRET_SUFFIXES) or "password" in field.lower():
        return True
    info = Settings.model_fields.get(field)
    if info is None:
        return True  # unknown: it could be a misspelt secret
    annotation = info.annotation
    return annotation in _SECRET_TYPES or any(a in _SECRET_TYPES for a in get_args(annotation))


def _shown(value: Any) -> str:
    """A value as shown in a message: repr, any URL password masked, truncated."""
    text = repr(value)
    text = _URL_PASSWORD.sub(r"\1***@", text)
    return text if len(text) <= _SHOWN_CHARS else text[: _SHOWN_CHARS - 1] + "…"
