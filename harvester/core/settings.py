"""Settings: read once, at the edge, from a TOML file and the environment (which wins), then passed down.

Nothing else in the code base reads the environment or a config file. Secrets (NCBI_API_KEY,
CROSSREF_PLUS_TOKEN, a database password) come from the environment only and travel as :class:`Secret`,
whose ``repr`` and ``str`` never show the value.
"""

from __future__ import annotations

import os
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from datetime import date, datetime
from pathlib import Path
from typing import Any

from harvester import __version__
from harvester.core.dburl import plain_sqlite_path, url_display, url_password
from harvester.core.errors import ConfigError

DEFAULT_EUTILS_URL = "https://eutils.ncbi.nlm.nih.gov/entrez/eutils/"
DEFAULT_IDCONV_URL = "https://pmc.ncbi.nlm.nih.gov/tools/idconv/api/v1/articles/"
DEFAULT_CROSSREF_URL = "https://api.crossref.org/"
DEFAULT_ICITE_URL = "https://icite.od.nih.gov/"
ICITE_MAX_PMIDS = 200  # per request, as iCite documents
NCBI_RPS_WITHOUT_KEY = 3.0
NCBI_RPS_WITH_KEY = 10.0
IDCONV_MAX_IDS = 200


class Secret:
    """A value that must never be printed, logged or stored; ``reveal()`` is the only way out."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value

    def reveal(self) -> str:
        return self._value

    def __repr__(self) -> str:
        return "Secret('***')"

    __str__ = __repr__

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Secret) and other._value == self._value

    def __hash__(self) -> int:
        return hash(self._value)


def default_database_path(env: Mapping[str, str]) -> Path:
    """$XDG_DATA_HOME/pubmed-harvester/harvest.sqlite, i.e. ~/.local/share/... when XDG_DATA_HOME is unset."""
    base = env.get("XDG_DATA_HOME") or str(Path(env.get("HOME") or Path.home()) / ".local" / "share")
    return Path(base) / "pubmed-harvester" / "harvest.sqlite"


def default_rate_dir(env: Mapping[str, str]) -> Path:
    """$XDG_CACHE_HOME/pubmed-harvester, i.e. ~/.cache/pubmed-harvester when XDG_CACHE_HOME is unset."""
    base = env.get("XDG_CACHE_HOME") or str(Path(env.get("HOME") or Path.home()) / ".cache")
    return Path(base) / "pubmed-harvester"


RATE_DIR_OFF = "off"


def _rate_dir(value: str, env: Mapping[str, str]) -> Path | None:
    """``[http] rate_dir`` / HARVEST_RATE_DIR: a directory, "off" (None), or unset (the default)."""
    if not value:
        return default_rate_dir(env)
    if value.lower() == RATE_DIR_OFF:
        return None
    return Path(value).expanduser()


@dataclass(frozen=True, slots=True)
class HttpSettings:
    timeout: float = 30.0  # seconds, for connect and for each read
    max_attempts: int = 6  # per request, the first included
    backoff_initial: float = 1.0  # seconds before the first retry when the service named no wait
    backoff_max: float = 60.0  # the longest single wait, also the cap on a Retry-After we honour
    max_response_bytes: int = 200_000_000  # a larger body is refused
    # Where harvest processes of this user record their latest sends to each service, so that together
    # they keep its rate (harvester.sources.http.SharedSends); None: each process paces only itself.
    rate_dir: Path | None = None


SEARCH_DATETYPES = (
    "mdat",
    "edat",
    "pdat",
)  # as harvester.jobs.search.DATETYPES; mdat brings changed records back


@dataclass(frozen=True, slots=True)
class SearchSpec:
    """One ``[[searches]]`` entry: what ``harvest nightly`` runs incrementally."""

    name: str
    query: str
    datetype: str = "mdat"
    since: date | None = None  # the first run's window start (else [nightly] first_run_days back)


@dataclass(frozen=True, slots=True)
class NightlySettings:
    """``[nightly]``: the look-back before a search's watermark, re-enrichment age, first-run window."""

    lookback_days: int = 3  # days before the watermark each window starts again (late and changed records)
    stale_days: int = 30  # re-enrich articles whose PMC/Crossref record is older than this
    first_run_days: int = 30  # a search without ``since`` starts this many days back on its first run
    icite_days: int = 30  # iCite updates monthly: ask again about metrics older than this, spread over it


@dataclass(frozen=True, slots=True)
class EnrichSettings:
    """``[enrich]``: how often a source that did not know an article is asked again."""

    # After each day a source answered "not found", `harvest enrich` (without ids) and `harvest nightly`
    # wait 1, 2, 4, ... days before asking it again, at most this many (0: ask on every run).
    not_found_max_days: int = 30


NOT_FOUND_MAX_DAYS_LIMIT = 3650  # ten years


@dataclass(frozen=True, slots=True)
class Settings:
    """Everything the tool needs to run, resolved and validated."""

    database_url: str = field(repr=False)  # may hold a password: see database_url_display
    email: str | None = None
    tool: str = "pubmed-harvester"
    ncbi_api_key: Secret | None = None
    eutils_url: str = DEFAULT_EUTILS_URL
    idconv_url: str = DEFAULT_IDCONV_URL
    crossref_url: str = DEFAULT_CROSSREF_URL
    crossref_plus_token: Secret | None = None
    icite_url: str = DEFAULT_ICITE_URL
    icite_requests_per_second: float = 2.0  # iCite publishes no limit
    icite_batch_size: int = ICITE_MAX_PMIDS
    ncbi_requests_per_second: float = NCBI_RPS_WITHOUT_KEY
    efetch_batch_size: int = 200
    idconv_batch_size: int = IDCONV_MAX_IDS
    log_file: Path | None = None
    http: HttpSettings = field(default_factory=HttpSettings)
    merge_overrides: Mapping[str, tuple[str, ...]] = field(default_factory=dict)  # [merge] in the file
    config_path: Path | None = None
    searches: tuple[SearchSpec, ...] = ()  # [[searches]]
    nightly: NightlySettings = field(default_factory=NightlySettings)  # [nightly]
    enrich: EnrichSettings = field(default_factory=EnrichSettings)  # [enrich]

    @property
    def merge_policy(self) -> Mapping[str, tuple[str, ...]]:
        """The field precedence policy: the defaults of enrich.merge with the config's overrides."""
        from harvester.core.policy import policy_from_config

        return policy_from_config(self.merge_overrides)

    @property
    def secrets(self) -> tuple[str, ...]:
        """Every secret value in force, for redaction of logs and messages."""
        values = [s.reveal() for s in (self.ncbi_api_key, self.crossref_plus_token) if s is not None]
        password = url_password(self.database_url)
        if password:
            values.append(password)
        return tuple(v for v in values if v)

    @property
    def database_url_display(self) -> str:
        """The database URL with any password masked."""
        return url_display(self.database_url)

    @property
    def user_agent(self) -> str:
        contact = f"; mailto:{self.email}" if self.email else ""
        return f"pubmed-harvester/{__version__} (https://github.com/pubmed-harvester{contact})"


# The config file's schema: section -> key -> (Settings attribute, expected type).
_SCHEMA: dict[str, dict[str, tuple[str, type]]] = {
    "database": {"url": ("database_url", str)},
    "ncbi": {
        "email": ("email", str),
        "tool": ("tool", str),
        "eutils_url": ("eutils_url", str),
        "idconv_url": ("idconv_url", str),
        "efetch_batch_size": ("efetch_batch_size", int),
        "idconv_batch_size": ("idconv_batch_size", int),
        "requests_per_second": ("ncbi_requests_per_second", float),
    },
    "crossref": {"url": ("crossref_url", str)},
    "icite": {
        "url": ("icite_url", str),
        "requests_per_second": ("icite_requests_per_second", float),
        "batch_size": ("icite_batch_size", int),
    },
    "http": {
        "timeout": ("http.timeout", float),
        "max_attempts": ("http.max_attempts", int),
        "backoff_initial": ("http.backoff_initial", float),
        "backoff_max": ("http.backoff_max", float),
        "max_response_bytes": ("http.max_response_bytes", int),
        "rate_dir": ("http.rate_dir", str),
    },
    "logging": {"file": ("log_file", str)},
    "nightly": {
        "lookback_days": ("nightly.lookback_days", int),
        "stale_days": ("nightly.stale_days", int),
        "first_run_days": ("nightly.first_run_days", int),
        "icite_days": ("nightly.icite_days", int),
    },
    "enrich": {"not_found_max_days": ("enrich.not_found_max_days", int)},
}

_SECRET_KEYS = {
    "api_key": "NCBI_API_KEY",
    "plus_token": "CROSSREF_PLUS_TOKEN",
    "token": "CROSSREF_PLUS_TOKEN",
}

_ENV: dict[str, str] = {
    "HARVEST_DATABASE_URL": "database_url",
    "HARVEST_EMAIL": "email",
    "HARVEST_EUTILS_URL": "eutils_url",
    "HARVEST_IDCONV_URL": "idconv_url",
    "HARVEST_CROSSREF_URL": "crossref_url",
    "HARVEST_ICITE_URL": "icite_url",
    "HARVEST_LOG_FILE": "log_file",
    "HARVEST_RATE_DIR": "http.rate_dir",
}


def _read_toml(path: Path) -> dict[str, Any]:
    try:
        with path.open("rb") as handle:
            return tomllib.load(handle)
    except FileNotFoundError:
        raise ConfigError(f"config file not found: {path}") from None
    except IsADirectoryError:
        raise ConfigError(f"config path is a directory, not a file: {path}") from None
    except PermissionError:
        raise ConfigError(f"config file cannot be read (permission denied): {path}") from None
    except UnicodeDecodeError:
        raise ConfigError(f"config file is not UTF-8 text: {path}") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"config file is not valid TOML: {path}: {exc}") from None


_TYPE_WORDS = {
    bool: "true or false",
    int: "a whole number",
    float: "a number",
    str: 'a string in quotes ("...")',
    list: "a list",
    dict: "a table",
    date: "a date",
    datetime: "a date and time",
}


def _type_words(kind: type) -> str:
    """A TOML reader's word for a type ("a whole number"), never Python's name for it."""
    for known, words in _TYPE_WORDS.items():
        if issubclass(kind, known):
            return words
    return "a value of another kind"  # pragma: no cover - TOML has no other kinds


def _coerce(value: Any, expected: type, where: str) -> Any:
    if expected is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if not isinstance(value, expected) or isinstance(value, bool):
        shown = repr(value) if len(repr(value)) <= 60 else repr(value)[:57] + "..."
        given = "a decimal number" if isinstance(value, float) else _type_words(type(value))
        raise ConfigError(f"config key {where} must be {_type_words(expected)}, not {given} ({shown})")
    return value


def _values_from_file(data: Mapping[str, Any], path: Path) -> dict[str, Any]:
    values: dict[str, Any] = {}
    for section, body in data.items():
        if section == "merge":
            values["merge_overrides"] = _merge_overrides(body, path)
            continue
        if section == "searches":
            values["searches"] = _searches(body, path)
            continue
        if section not in _SCHEMA:
            known = ", ".join([*(f"[{s}]" for s in _SCHEMA), "[merge]", "[[searches]]"])
            raise ConfigError(f"{path}: unknown section [{section}] (known: {known})")
        if not isinstance(body, dict):
            raise ConfigError(f"{path}: [{section}] must be a table")
        for key, value in body.items():
            if key in _SECRET_KEYS:
                raise ConfigError(
                    f"{path}: secrets do not belong in the config file; set {_SECRET_KEYS[key]} "
                    "in the environment instead"
                )
            if key not in _SCHEMA[section]:
                known = ", ".join(_SCHEMA[section])
                raise ConfigError(f"{path}: unknown key {section}.{key} (known: {known})")
            attribute, expected = _SCHEMA[section][key]
            values[attribute] = _coerce(value, expected, f"{section}.{key}")
    return values


def _merge_overrides(body: Any, path: Path) -> dict[str, tuple[str, ...]]:
    """[merge] field = ["source", ...]: validated against the merge module's fields and sources."""
    from harvester.core.policy import policy_from_config

    if not isinstance(body, dict):
        raise ConfigError(f"{path}: [merge] must be a table")
    overrides: dict[str, tuple[str, ...]] = {}
    for name, order in body.items():
        if not isinstance(order, list) or not all(isinstance(x, str) for x in order):
            raise ConfigError(
                f'{path}: merge.{name} must be a list of source names, e.g. ["pmc", "crossref"]'
            )
        overrides[name] = tuple(order)
    try:
        policy_from_config(overrides)
    except ConfigError as exc:
        raise ConfigError(f"{path}: {exc}") from None
    return overrides


_SEARCH_KEYS = ("name", "query", "datetype", "since")
_SEARCH_NAME_CHARS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_.")


def _searches(body: Any, path: Path) -> tuple[SearchSpec, ...]:
    """[[searches]]: name (unique; letters, digits, - _ .), query, datetype (mdat), since (a date)."""
    if not isinstance(body, list) or not all(isinstance(entry, dict) for entry in body):
        raise ConfigError(
            f'{path}: searches must be an array of tables: [[searches]] name = "..." query = "..."'
        )
    specs: list[SearchSpec] = []
    for number, entry in enumerate(body, start=1):
        where = f"{path}: [[searches]] #{number}"
        unknown = sorted(set(entry) - set(_SEARCH_KEYS))
        if unknown:
            raise ConfigError(f"{where}: unknown key {unknown[0]} (known: {', '.join(_SEARCH_KEYS)})")
        for key in ("name", "query"):
            if key not in entry:
                raise ConfigError(f"{where}: {key} is missing")
        name = _coerce(entry["name"], str, f"searches.name (#{number})").strip()
        query = _coerce(entry["query"], str, f"searches.query ({name or number})").strip()
        if not name or not set(name) <= _SEARCH_NAME_CHARS:
            raise ConfigError(f"{where}: name {name!r} must be letters, digits, '-', '_' or '.'")
        if not query:
            raise ConfigError(f"{where}: the query of search {name!r} is empty")
        datetype = _coerce(entry.get("datetype", "mdat"), str, f"searches.datetype ({name})").strip().lower()
        if datetype not in SEARCH_DATETYPES:
            known = ", ".join(SEARCH_DATETYPES)
            raise ConfigError(f"{where}: datetype {datetype!r} of search {name!r} must be one of {known}")
        specs.append(SearchSpec(name, query, datetype, _since(entry.get("since"), f"{where} ({name})")))
    names = [spec.name for spec in specs]
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        raise ConfigError(f"{path}: two [[searches]] are named {duplicates[0]!r}; names must be unique")
    return tuple(specs)


def _since(value: Any, where: str) -> date | None:
    """A TOML date (since = 2024-01-01) or the same as a string; never a date-time."""
    if value is None:
        return None
    if isinstance(value, date) and not isinstance(value, datetime):
        return value
    if isinstance(value, str):
        try:
            return date.fromisoformat(value.strip())
        except ValueError:
            pass
    raise ConfigError(f"{where}: since must be a date like 2024-01-01, not {value!r}")


def normalize_database_url(value: str) -> str:
    """Accept a SQLAlchemy URL, or a plain file path meaning a SQLite file."""
    text = value.strip()
    if not text:
        raise ConfigError("the database URL is empty")
    if "://" not in text:
        text = "sqlite:///" + str(Path(text).expanduser().resolve())
    if plain_sqlite_path(text) is not None:
        return text  # what make_url would render (harvester.core.dburl), without importing SQLAlchemy
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError

    try:
        url = make_url(text)
    except ArgumentError:
        raise ConfigError("the database URL is not a valid SQLAlchemy URL") from None
    if url.get_backend_name() not in {"sqlite", "postgresql"}:
        backend = url.get_backend_name()
        hint = "did you mean postgresql://USER@HOST/DB?" if backend.startswith(("postgres", "pg")) else ""
        raise ConfigError(
            f"unsupported database {backend!r}: "
            + (hint or "use sqlite:///PATH, a file path, or postgresql://USER@HOST/DB")
        )
    if url.drivername in {"postgresql", "postgres", "postgresql+psycopg2"}:
        url = url.set(drivername="postgresql+psycopg")
    return url.render_as_string(hide_password=False)


def _check_url(name: str, value: str) -> str:
    if not value.startswith(("http://", "https://")):
        raise ConfigError(f"{name} must be an http(s) URL, got {value!r}")
    return value if value.endswith("/") else value + "/"


def load_settings(
    config_path: str | Path | None = None,
    env: Mapping[str, str] | None = None,
    *,
    database_url: str | None = None,
) -> Settings:
    """Build the settings: defaults, then the config file, then the environment, then ``database_url``.

    Args:
        config_path: a TOML file; when None, HARVEST_CONFIG names one if set.
        env: the environment to read (``os.environ`` when None).
        database_url: the CLI's ``--db``, which wins over everything.

    Raises:
        ConfigError: the file is missing, unreadable, not TOML, or has unknown keys or wrong types.
    """
    env = os.environ if env is None else env
    values: dict[str, Any] = {}
    path: Path | None = None
    chosen = config_path if config_path is not None else env.get("HARVEST_CONFIG") or None
    if chosen is not None:
        path = Path(chosen).expanduser()
        try:
            values.update(_values_from_file(_read_toml(path), path))
        except ConfigError as exc:  # every message about the file names it
            if str(path) in exc.message:
                raise
            raise ConfigError(f"{path}: {exc.message}") from None
    for name, attribute in _ENV.items():
        if env.get(name):
            values[attribute] = env[name]
    if database_url:
        values["database_url"] = database_url

    http_values = {k.split(".", 1)[1]: values.pop(k) for k in list(values) if k.startswith("http.")}
    rate_dir = _rate_dir(str(http_values.pop("rate_dir", "") or "").strip(), env)
    http = replace(HttpSettings(), rate_dir=rate_dir, **http_values)
    nightly_values = {k.split(".", 1)[1]: values.pop(k) for k in list(values) if k.startswith("nightly.")}
    nightly = replace(NightlySettings(), **nightly_values)
    if min(nightly.lookback_days, nightly.stale_days, nightly.first_run_days, nightly.icite_days) < 0:
        raise ConfigError("[nightly] lookback_days, stale_days, first_run_days and icite_days must be >= 0")
    enrich_values = {k.split(".", 1)[1]: values.pop(k) for k in list(values) if k.startswith("enrich.")}
    enrich = replace(EnrichSettings(), **enrich_values)
    if not 0 <= enrich.not_found_max_days <= NOT_FOUND_MAX_DAYS_LIMIT:
        raise ConfigError(
            f"{path}: config key enrich.not_found_max_days must be between 0 and {NOT_FOUND_MAX_DAYS_LIMIT}"
            f" (0: ask again on every run), not {enrich.not_found_max_days}"
        )
    if http.timeout <= 0 or http.max_attempts < 1 or http.backoff_max < 0 or http.backoff_initial < 0:
        raise ConfigError("[http] timeout must be > 0, max_attempts >= 1 and back-off times >= 0")

    api_key = Secret(env["NCBI_API_KEY"]) if env.get("NCBI_API_KEY") else None
    plus = Secret(env["CROSSREF_PLUS_TOKEN"]) if env.get("CROSSREF_PLUS_TOKEN") else None
    ceiling = NCBI_RPS_WITH_KEY if api_key else NCBI_RPS_WITHOUT_KEY
    rps = float(values.pop("ncbi_requests_per_second", ceiling))
    if not 0 < rps <= ceiling:
        raise ConfigError(
            f"ncbi.requests_per_second must be above 0 and at most {ceiling:g} "
            f"({'with' if api_key else 'without'} an API key, as NCBI allows)"
        )

    db = normalize_database_url(values.pop("database_url", None) or str(default_database_path(env)))
    log_file = values.pop("log_file", None)
    settings = Settings(
        database_url=db,
        ncbi_api_key=api_key,
        crossref_plus_token=plus,
        ncbi_requests_per_second=rps,
        log_file=Path(log_file).expanduser() if log_file else None,
        http=http,
        nightly=nightly,
        enrich=enrich,
        config_path=path,
        **values,
    )
    settings = replace(
        settings,
        eutils_url=_check_url("eutils_url", settings.eutils_url),
        idconv_url=_check_url("idconv_url", settings.idconv_url),
        crossref_url=_check_url("crossref_url", settings.crossref_url),
        icite_url=_check_url("icite_url", settings.icite_url),
    )
    if not 1 <= settings.icite_batch_size <= ICITE_MAX_PMIDS:
        raise ConfigError(f"icite.batch_size must be between 1 and {ICITE_MAX_PMIDS}")
    if not 0 < settings.icite_requests_per_second <= 20:
        raise ConfigError("icite.requests_per_second must be above 0 and at most 20")
    if not 1 <= settings.efetch_batch_size <= 10_000:
        raise ConfigError("ncbi.efetch_batch_size must be between 1 and 10000")
    if not 1 <= settings.idconv_batch_size <= IDCONV_MAX_IDS:
        raise ConfigError(f"ncbi.idconv_batch_size must be between 1 and {IDCONV_MAX_IDS}")
    if settings.email is not None and ("@" not in settings.email or " " in settings.email.strip()):
        raise ConfigError(f"the contact e-mail {settings.email!r} is not an e-mail address")
    if " " in settings.tool or not settings.tool:
        raise ConfigError("ncbi.tool must be one word with no spaces, as NCBI asks")
    return settings
