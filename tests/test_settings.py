import os
import re
import tempfile
from pathlib import Path

import pytest
from pydantic import TypeAdapter, ValidationError

from settings import Settings

REPO = Path(__file__).resolve().parent.parent
SETTINGS_PAGE = REPO / "docs" / "operating" / "settings.md"


def test_defaults_point_at_the_local_stack_and_shared_dir(monkeypatch):
    for var in ("DATABASE_URL", "KAFKA_TOPIC", "BATCH_SIZE", "MODEL_NAME", "SHARED_DIR"):
        monkeypatch.delenv(var, raising=False)
    s = Settings(_env_file=None)
    assert s.kafka_topic == "image-keys"
    assert s.kafka_partitions == 3
    assert s.model_name == "squeezenet1_1"
    assert s.shared_dir == Path(__file__).resolve().parent.parent.parent / "shared"
    assert s.database_url.startswith("postgresql://")


def test_environment_overrides(monkeypatch):
    monkeypatch.setenv("BATCH_SIZE", "7")
    monkeypatch.setenv("KAFKA_TOPIC", "other")
    monkeypatch.setenv("MODEL_WEIGHTS", "~/w.pth")
    s = Settings(_env_file=None)
    assert s.batch_size == 7 and s.kafka_topic == "other"
    assert s.model_weights == Path.home() / "w.pth"


def test_invalid_values_are_rejected(monkeypatch):
    monkeypatch.setenv("BATCH_SIZE", "0")
    with pytest.raises(ValidationError):
        Settings(_env_file=None)
    monkeypatch.setenv("BATCH_SIZE", "8")
    monkeypatch.setenv("MODEL_NAME", "../etc/passwd")  # a registered model's name is a plain word
    with pytest.raises(ValidationError):
        Settings(_env_file=None)


def test_dotenv_file_is_read(tmp_path, monkeypatch):
    monkeypatch.delenv("KAFKA_TOPIC", raising=False)
    env = tmp_path / ".env"
    env.write_text("KAFKA_TOPIC=from-dotenv\n")
    assert Settings(_env_file=env).kafka_topic == "from-dotenv"


def test_kafka_client_config_carries_sasl(monkeypatch):
    monkeypatch.setenv("KAFKA_SECURITY_PROTOCOL", "SASL_SSL")
    monkeypatch.setenv("KAFKA_SASL_MECHANISM", "SCRAM-SHA-512")
    monkeypatch.setenv("KAFKA_SASL_USERNAME", "u")
    monkeypatch.setenv("KAFKA_SASL_PASSWORD", "p")
    cfg = Settings(_env_file=None).kafka_client_config()
    assert cfg["security.protocol"] == "SASL_SSL"
    assert cfg["sasl.mechanism"] == "SCRAM-SHA-512" and cfg["sasl.username"] == "u"
    monkeypatch.setenv("KAFKA_SSL_CAFILE", "/etc/ca.pem")
    assert Settings(_env_file=None).kafka_client_config()["ssl.ca.location"] == "/etc/ca.pem"


def test_env_example_documents_every_setting():
    text = (REPO / ".env.example").read_text()
    missing = [name.upper() for name in Settings.model_fields if name.upper() not in text]
    assert missing == []


def _documented_defaults() -> dict[str, str]:
    """VARIABLE -> its default cell, from the reference table of the docs' settings page."""
    rows = re.findall(r"^\| `([A-Z0-9_]+)` \| ([^|]+) \| [^|]+ \|$", SETTINGS_PAGE.read_text(), re.MULTILINE)
    names = [name for name, _ in rows]
    assert len(names) == len(set(names)), "a variable is listed twice"
    return {name: default.strip() for name, default in rows}


def test_settings_page_lists_every_setting_and_nothing_else():
    assert sorted(_documented_defaults()) == sorted(name.upper() for name in Settings.model_fields)


def _page_path(text: str) -> Path:
    """A path as the page writes it for a user: ~, $TMPDIR, or relative to the repository."""
    path = Path(text.replace("$TMPDIR", tempfile.gettempdir())).expanduser()
    return path if path.is_absolute() else Path(os.path.normpath(REPO / path))


@pytest.mark.parametrize("name", sorted(Settings.model_fields))
def test_settings_page_gives_the_default_of(name):
    field, cell = Settings.model_fields[name], _documented_defaults()[name.upper()]
    if field.default_factory is not None:  # the CPU count, the hostname: said in words
        assert cell and "`" not in cell
        return
    if field.default is None:
        assert cell.startswith("unset")
        return
    value = re.match(r"`([^`]*)`", cell)
    assert value, f"{name.upper()}: the default in backquotes, got {cell!r}"
    if isinstance(field.default, Path):
        assert _page_path(value.group(1)) == field.default
    else:
        assert TypeAdapter(field.annotation).validate_python(value.group(1)) == field.default


def test_each_s3_client_takes_the_credentials_of_its_time(monkeypatch):
    """boto3's default session resolves credentials once per process: a client made after the
    environment changed (another stack in the same test run, rotated credentials) kept the old
    ones and got 403s."""
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "first")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "secret-1")
    first = Settings(_env_file=None).s3_client()
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "second")
    second = Settings(_env_file=None).s3_client()
    keys = [c._request_signer._credentials.get_frozen_credentials().access_key for c in (first, second)]
    assert keys == ["first", "second"]


# name -> is it a model name (MODEL_NAME, training fit --name, NAME in NAME@N)
TRICKY_MODEL_NAMES = {
    "abc": True,
    "A": True,
    "9lives": True,
    "cats.v2_final-1": True,
    "a..": True,
    "x" * 64: True,
    "x" * 65: False,
    "abc\n": False,  # re.match with ^...$ accepts it: $ matches before a trailing newline
    "abc\r\n": False,
    "\nabc": False,
    "café": False,
    "é": False,
    "１２３": False,  # full-width digits
    "v١": False,  # an Arabic-Indic digit: str.isdigit() says yes
    "-lead": False,
    "_lead": False,
    ".": False,
    "..": False,
    ".hidden": False,
    "a/b": False,
    "../etc": False,
    "a@1": False,
    "a b": False,
    " a": False,
    "a ": False,
    "a\tb": False,
    "a\x00": False,
    "": False,
}


@pytest.mark.parametrize("name", TRICKY_MODEL_NAMES)
def test_check_model_name_and_the_model_name_setting_accept_exactly_the_same_names(name):
    from settings import check_model_name

    def accepted(check) -> bool:
        try:
            check()
        except (ValueError, ValidationError):
            return False
        return True

    by_function = accepted(lambda: check_model_name(name))
    by_settings = accepted(lambda: Settings(_env_file=None, model_name=name))
    assert (by_function, by_settings) == (TRICKY_MODEL_NAMES[name], TRICKY_MODEL_NAMES[name])
    if by_function:
        assert check_model_name(name) == name


@pytest.mark.parametrize(
    "bad, shown",
    [({"KAFKA_MIN_INSYNC_REPLICAS": "3"}, "KAFKA_MIN_INSYNC_REPLICAS=3 exceeds"), ({"BATCH_SIZE": "0"}, "(got '0')")],
)
def test_an_invalid_setting_never_echoes_a_password(monkeypatch, bad, shown):
    from settings import SettingsError, get_settings

    secret = "hunter2-do-not-print"
    monkeypatch.setenv("DATABASE_URL", f"postgresql://u:{secret}@h/db")
    monkeypatch.setenv("KAFKA_SASL_PASSWORD", secret)
    for name, value in bad.items():  # a check across fields (whose input is all settings), or a field's own
        monkeypatch.setenv(name, value)
    get_settings.cache_clear()
    try:
        with pytest.raises(SettingsError) as stopped:
            get_settings()
    finally:
        get_settings.cache_clear()
    message = str(stopped.value)
    assert shown in message and secret not in message, message
