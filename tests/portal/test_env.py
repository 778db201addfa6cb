import pytest

from portal.env import ConfigurationError, env_bool, env_choice, env_int, env_list, env_url

REDIS = ("redis", "rediss", "unix")


def test_env_bool_reads_common_words(monkeypatch):
    monkeypatch.setenv("FLAG", "yes")
    assert env_bool("FLAG") is True
    monkeypatch.setenv("FLAG", "0")
    assert env_bool("FLAG", default=True) is False


def test_env_bool_rejects_a_typo_loudly(monkeypatch):
    monkeypatch.setenv("FLAG", "ture")
    with pytest.raises(ConfigurationError, match="FLAG='ture' is not a boolean"):
        env_bool("FLAG")


def test_env_int_rejects_non_numbers_and_values_below_minimum(monkeypatch):
    monkeypatch.setenv("WORKERS", "four")
    with pytest.raises(ConfigurationError, match="not an integer"):
        env_int("WORKERS", 2)
    monkeypatch.setenv("WORKERS", "0")
    with pytest.raises(ConfigurationError, match="at least 1"):
        env_int("WORKERS", 2, minimum=1)


def test_env_int_uses_default_when_unset(monkeypatch):
    monkeypatch.delenv("WORKERS", raising=False)
    assert env_int("WORKERS", 3) == 3


def test_env_list_splits_on_commas(monkeypatch):
    monkeypatch.setenv("HOSTS", "a.example, b.example,,")
    assert env_list("HOSTS", []) == ["a.example", "b.example"]


def test_env_choice_rejects_unknown_values(monkeypatch):
    monkeypatch.setenv("MODE", "fast")
    with pytest.raises(ConfigurationError, match="must be one of"):
        env_choice("MODE", "safe", {"safe", "strict"})


def test_env_url_takes_its_schemes_or_nothing(monkeypatch):
    monkeypatch.setenv("BROKER", "rediss://:pw@redis:6380/0")
    assert env_url("BROKER", "", REDIS, "use Redis") == "rediss://:pw@redis:6380/0"
    monkeypatch.delenv("BROKER")
    assert env_url("BROKER", "", REDIS, "use Redis") == ""


@pytest.mark.parametrize(
    "url, said",
    [
        ("Redis://:hunter2-secret@redis:6379/0", "BROKER has the scheme 'Redis': use Redis"),
        ("amqp://guest:hunter2-secret@rabbit:5672", "BROKER has the scheme 'amqp': use Redis"),
        ("hunter2-secret@redis:6379", "BROKER is not a URL: use Redis"),
        (":hunter2-secret@x/y://z", "BROKER is not a URL: use Redis"),
    ],
)
def test_a_refused_url_is_named_without_its_password(monkeypatch, url, said):
    """The message ends up in the crash log, CrashLoopBackOff events and CI output."""
    monkeypatch.setenv("BROKER", url)
    with pytest.raises(ConfigurationError) as refused:
        env_url("BROKER", "", REDIS, "use Redis")
    assert str(refused.value) == said
