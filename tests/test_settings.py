"""Settings: file, environment, precedence, validation, secrets."""

from __future__ import annotations

from pathlib import Path

import pytest

from harvester.core.errors import ConfigError
from harvester.core.settings import DEFAULT_EUTILS_URL, Secret, load_settings

ROOT = Path(__file__).parent.parent


def test_defaults_without_any_config(tmp_path: Path) -> None:
    settings = load_settings(env={"HOME": str(tmp_path)})
    assert settings.database_url == f"sqlite:///{tmp_path}/.local/share/pubmed-harvester/harvest.sqlite"
    assert settings.eutils_url == DEFAULT_EUTILS_URL
    assert settings.ncbi_requests_per_second == 3
    assert settings.email is None and settings.ncbi_api_key is None


def test_xdg_data_home_moves_the_default_database(tmp_path: Path) -> None:
    settings = load_settings(env={"HOME": "/nonexistent", "XDG_DATA_HOME": str(tmp_path)})
    assert settings.database_url == f"sqlite:///{tmp_path}/pubmed-harvester/harvest.sqlite"


def test_rate_dir_defaults_to_the_cache_and_is_set_by_file_env_or_off(tmp_path: Path) -> None:
    home = {"HOME": str(tmp_path)}
    assert load_settings(env=home).http.rate_dir == tmp_path / ".cache" / "pubmed-harvester"
    cache = {**home, "XDG_CACHE_HOME": str(tmp_path / "xdg")}
    assert load_settings(env=cache).http.rate_dir == tmp_path / "xdg" / "pubmed-harvester"
    config = tmp_path / "c.toml"
    config.write_text('[http]\nrate_dir = "/srv/harvest/rate"\n')
    assert load_settings(config, env=home).http.rate_dir == Path("/srv/harvest/rate")
    env = {**home, "HARVEST_RATE_DIR": str(tmp_path / "env")}
    assert load_settings(config, env=env).http.rate_dir == tmp_path / "env"  # the environment wins
    assert load_settings(config, env={**home, "HARVEST_RATE_DIR": "off"}).http.rate_dir is None
    config.write_text("[http]\nrate_dir = 3\n")
    with pytest.raises(ConfigError, match="rate_dir"):
        load_settings(config, env=home)


def test_config_example_is_valid_and_documents_every_key(tmp_path: Path) -> None:
    settings = load_settings(ROOT / "config.example.toml", env={"HOME": str(tmp_path)})
    assert settings.email == "you@example.org"
    assert settings.efetch_batch_size == 200
    text = (ROOT / "config.example.toml").read_text()
    from harvester.core.settings import _SCHEMA

    for section, keys in _SCHEMA.items():
        assert f"[{section}]" in text
        for key in keys:
            assert f"{key} =" in text, f"config.example.toml does not document {section}.{key}"


def test_environment_wins_over_file_and_db_option_wins_over_both(tmp_path: Path) -> None:
    config = tmp_path / "c.toml"
    config.write_text('[database]\nurl = "sqlite:///from-file.sqlite"\n[ncbi]\nemail = "file@example.org"\n')
    env = {
        "HOME": str(tmp_path),
        "HARVEST_EMAIL": "env@example.org",
        "HARVEST_DATABASE_URL": "sqlite:///env.db",
    }
    settings = load_settings(config, env=env)
    assert settings.email == "env@example.org"
    assert settings.database_url == "sqlite:///env.db"
    settings = load_settings(config, env=env, database_url=str(tmp_path / "cli.sqlite"))
    assert settings.database_url == f"sqlite:///{tmp_path}/cli.sqlite"


def test_harvest_config_env_names_the_file(tmp_path: Path) -> None:
    config = tmp_path / "c.toml"
    config.write_text("[ncbi]\nefetch_batch_size = 7\n")
    assert load_settings(env={"HOME": str(tmp_path), "HARVEST_CONFIG": str(config)}).efetch_batch_size == 7


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("[ncbi\n", "not valid TOML"),
        ("[nope]\nx = 1\n", "unknown section [nope]"),
        ("[ncbi]\nbatch = 1\n", "unknown key ncbi.batch"),
        ('[ncbi]\nefetch_batch_size = "200"\n', "must be a whole number, not a string"),
        ("[http]\ntimeout = true\n", "must be a number, not true or false"),
        ('[ncbi]\napi_key = "abc"\n', "NCBI_API_KEY"),
        ("[ncbi]\nrequests_per_second = 5\n", "at most 3"),
        ("[ncbi]\nefetch_batch_size = 0\n", "between 1 and 10000"),
        ("[ncbi]\nidconv_batch_size = 500\n", "between 1 and 200"),
        ('[ncbi]\nemail = "nobody"\n', "not an e-mail"),
        ('[ncbi]\ntool = "my tool"\n', "no spaces"),
        ('[ncbi]\neutils_url = "ftp://x"\n', "http(s) URL"),
        ('[database]\nurl = "mysql://x/y"\n', "unsupported database"),
        ("ncbi = 3\n", "must be a table"),
        (b"\xff\xfe".decode("latin-1"), "not UTF-8"),
    ],
)
def test_broken_config_is_refused_with_one_line(tmp_path: Path, content: str, message: str) -> None:
    config = tmp_path / "c.toml"
    config.write_bytes(content.encode("latin-1") if "not UTF-8" in message else content.encode())
    with pytest.raises(ConfigError) as info:
        load_settings(config, env={"HOME": str(tmp_path)})
    assert message in str(info.value)
    assert "\n" not in str(info.value)


def test_missing_config_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="config file not found"):
        load_settings(tmp_path / "absent.toml", env={})


def test_api_key_raises_the_rate_and_is_never_shown(tmp_path: Path) -> None:
    settings = load_settings(env={"HOME": str(tmp_path), "NCBI_API_KEY": "SECRET123"})
    assert settings.ncbi_requests_per_second == 10
    assert isinstance(settings.ncbi_api_key, Secret)
    assert settings.ncbi_api_key.reveal() == "SECRET123"
    assert "SECRET123" not in repr(settings) and "SECRET123" not in str(settings)
    assert "SECRET123" in settings.secrets


def test_database_password_is_a_secret_and_masked(tmp_path: Path) -> None:
    url = "postgresql://harvest:pa55word@db.example.org/harvest"
    settings = load_settings(env={"HOME": str(tmp_path), "HARVEST_DATABASE_URL": url})
    assert settings.database_url.startswith("postgresql+psycopg://")
    assert "pa55word" in settings.secrets
    assert "pa55word" not in settings.database_url_display
    assert "pa55word" not in repr(settings)


def test_config_example_lists_every_merge_field_with_its_default() -> None:
    from enrich.merge import DEFAULT_POLICY

    text = (ROOT / "config.example.toml").read_text()
    for name, order in DEFAULT_POLICY.items():
        listed = ", ".join(f'"{source}"' for source in order)
        assert f"# {name} = [{listed}]" in text, name


def test_enrich_not_found_max_days_is_read_and_checked_with_a_message_naming_the_key(tmp_path: Path) -> None:
    home = {"HOME": str(tmp_path)}
    assert load_settings(env=home).enrich.not_found_max_days == 30
    config = tmp_path / "c.toml"
    for value in (0, 7, 3650):
        config.write_text(f"[enrich]\nnot_found_max_days = {value}\n")
        assert load_settings(config, env=home).enrich.not_found_max_days == value
    for text, words in (
        ("-1", "between 0 and 3650"),
        ("3651", "between 0 and 3650"),
        ('"7"', "whole number"),
    ):
        config.write_text(f"[enrich]\nnot_found_max_days = {text}\n")
        with pytest.raises(ConfigError, match=r"enrich\.not_found_max_days") as caught:
            load_settings(config, env=home)
        assert words in str(caught.value) and str(config) in str(caught.value)
