"""Settings read once from the environment, failing fast on bad values."""

from __future__ import annotations

from pathlib import Path

import pytest
from psycopg.conninfo import conninfo_to_dict

from application.settings import (
    DEVELOPMENT_JWT_SECRET,
    ConfigurationError,
    Settings,
)

SECRET = "s" * 32


def refusal(env: dict[str, str]) -> str:
    with pytest.raises(ConfigurationError) as caught:
        Settings.from_env(env)
    return str(caught.value)


def test_an_empty_environment_gives_the_local_development_defaults() -> None:
    settings = Settings.from_env({})

    assert settings.is_development
    assert settings.jwt_secret == DEVELOPMENT_JWT_SECRET
    assert settings.database_url == "postgresql://postgres@127.0.0.1:5432/billing"
    assert settings.redis_url == "redis://127.0.0.1:6379/0"
    assert settings.enabled_tenants is None


@pytest.mark.parametrize(
    ("value", "enabled", "disabled"),
    [
        ("*", {"t_a", "t_b", "anyone"}, set()),
        (" * ", {"t_a"}, set()),
        ("", set(), {"t_a", "t_b"}),
        ("t_a,t_b", {"t_a", "t_b"}, {"t_c", "t_a,t_b", ""}),
        (" t_a , t_b ,", {"t_a", "t_b"}, {"t_c", ""}),
    ],
)
def test_enabled_tenants_are_everyone_no_one_or_a_list(
    value: str, enabled: set[str], disabled: set[str]
) -> None:
    settings = Settings.from_env({"BILLING_ENABLED_TENANTS": value})

    assert all(settings.tenant_enabled(t) for t in enabled)
    assert not any(settings.tenant_enabled(t) for t in disabled)


def test_production_without_a_jwt_secret_fails_naming_the_variable() -> None:
    assert refusal({"BILLING_ENV": "production"}) == (
        "BILLING_JWT_SECRET is required when BILLING_ENV=production"
    )


def test_production_with_a_jwt_secret_uses_it() -> None:
    settings = Settings.from_env(
        {"BILLING_ENV": "production", "BILLING_JWT_SECRET": SECRET}
    )

    assert settings.jwt_secret == SECRET
    assert not settings.is_development


def test_a_short_jwt_secret_is_refused() -> None:
    assert refusal({"BILLING_JWT_SECRET": "s" * 31}) == (
        "BILLING_JWT_SECRET must be at least 32 characters"
    )


def test_an_unknown_environment_is_refused() -> None:
    assert refusal({"BILLING_ENV": "staging"}) == (
        "BILLING_ENV must be 'development' or 'production'"
    )


@pytest.mark.parametrize(
    "schema", ["Billing", "1billing", "bill-ing", "", "a" * 64, "x; drop"]
)
def test_a_bad_schema_name_is_refused(schema: str) -> None:
    assert refusal({"BILLING_DB_SCHEMA": schema}) == (
        "BILLING_DB_SCHEMA must be a lowercase SQL identifier"
    )


@pytest.mark.parametrize("url", ["mysql://u@h/db", "postgresql://u@h", "not a url"])
def test_a_bad_database_url_is_refused(url: str) -> None:
    env = {"DATABASE_URL": url, "BILLING_JWT_SECRET": SECRET}

    assert refusal(env).startswith("DATABASE_URL must look like")


def test_a_bad_database_url_is_refused_in_development_too() -> None:
    assert refusal({"DATABASE_URL": "mysql://u@h/db"}).startswith(
        "DATABASE_URL must look like"
    )


@pytest.mark.parametrize("value", ["x", "0", "-1"])
def test_a_bad_number_is_refused_naming_the_variable(value: str) -> None:
    assert refusal({"BILLING_MAX_READ_WAIT_SECONDS": value}).startswith(
        "BILLING_MAX_READ_WAIT_SECONDS must be"
    )


def test_numbers_are_read_from_the_environment() -> None:
    settings = Settings.from_env(
        {"BILLING_DB_POOL_SIZE": "3", "BILLING_PROJECTION_TICK_SECONDS": "0.5"}
    )

    assert (settings.db_pool_size, settings.projection_tick_seconds) == (3, 0.5)


def test_a_nan_wait_is_refused_naming_the_variable() -> None:
    assert refusal({"BILLING_MAX_READ_WAIT_SECONDS": "nan"}).startswith(
        "BILLING_MAX_READ_WAIT_SECONDS"
    )


def test_a_fractional_pool_size_is_refused_naming_the_variable() -> None:
    assert refusal({"BILLING_DB_POOL_SIZE": "0.5"}).startswith("BILLING_DB_POOL_SIZE")


def test_the_connection_string_sets_the_search_path_to_the_schema() -> None:
    settings = Settings.from_env(
        {
            "DATABASE_URL": "postgresql://app:pw@db.internal:6543/billing_prod",
            "BILLING_DB_SCHEMA": "tenant_x",
        }
    )

    conninfo = settings.conninfo()

    assert "options='-c search_path=tenant_x'" in conninfo
    assert "host='db.internal'" in conninfo
    assert "port='6543'" in conninfo
    assert "dbname='billing_prod'" in conninfo


def test_the_eventsourcing_environment_names_the_schema_and_database() -> None:
    settings = Settings.from_env({"BILLING_DB_SCHEMA": "tenant_x"})

    env = settings.eventsourcing_env()

    assert env["PERSISTENCE_MODULE"] == "eventsourcing.postgres"
    assert (env["POSTGRES_SCHEMA"], env["POSTGRES_DBNAME"]) == ("tenant_x", "billing")
    assert env["CREATE_TABLE"] == "n"


def test_the_jwt_secret_and_public_key_are_not_in_the_repr() -> None:
    settings = Settings.from_env(
        {"BILLING_JWT_SECRET": SECRET, "BILLING_JWT_PUBLIC_KEY": "-----BEGIN KEY-----x"}
    )

    assert SECRET not in repr(settings)
    assert "BEGIN KEY" not in repr(settings)


def test_the_database_password_is_not_in_the_repr_of_its_parameters() -> None:
    settings = Settings.from_env(
        {"DATABASE_URL": "postgresql://app:hunter2pw@db/billing"}
    )

    assert "hunter2pw" not in repr(settings.postgres)


def test_the_database_and_redis_passwords_are_not_in_the_repr() -> None:
    settings = Settings.from_env(
        {
            "DATABASE_URL": "postgresql://app:hunter2pw@db/billing",
            "REDIS_URL": "redis://:redis2pw@cache:6379/0",
        }
    )

    assert "hunter2pw" not in repr(settings)
    assert "redis2pw" not in repr(settings)


def test_a_public_key_may_be_given_as_the_path_of_a_pem_file(tmp_path: Path) -> None:
    pem = "-----BEGIN PUBLIC KEY-----\nabc\n-----END PUBLIC KEY-----\n"
    key_file = tmp_path / "jwt.pem"
    key_file.write_text(pem)

    settings = Settings.from_env({"BILLING_JWT_PUBLIC_KEY": str(key_file)})

    assert settings.jwt_public_key == pem


def test_quotes_in_the_database_password_are_escaped_in_the_connection_string() -> None:
    settings = Settings.from_env({"DATABASE_URL": "postgresql://app:it%27s@db/billing"})

    assert "password='it\\'s'" in settings.conninfo()


def test_database_waits_are_bounded_by_default() -> None:
    settings = Settings.from_env({})

    assert settings.db_connect_timeout_seconds == 2
    assert settings.db_pool_timeout_seconds == 2.0
    assert settings.db_statement_timeout_seconds == 5.0


def test_database_waits_are_read_from_the_environment() -> None:
    settings = Settings.from_env(
        {
            "BILLING_DB_CONNECT_TIMEOUT_SECONDS": "3",
            "BILLING_DB_POOL_TIMEOUT_SECONDS": "0.5",
            "BILLING_DB_STATEMENT_TIMEOUT_SECONDS": "12.5",
        }
    )

    assert settings.db_connect_timeout_seconds == 3
    assert settings.db_pool_timeout_seconds == 0.5
    assert settings.db_statement_timeout_seconds == 12.5


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("BILLING_DB_CONNECT_TIMEOUT_SECONDS", "1.5"),
        ("BILLING_DB_CONNECT_TIMEOUT_SECONDS", "0"),
        ("BILLING_DB_POOL_TIMEOUT_SECONDS", "0"),
        ("BILLING_DB_POOL_TIMEOUT_SECONDS", "inf"),
        ("BILLING_DB_STATEMENT_TIMEOUT_SECONDS", "-1"),
        ("BILLING_DB_STATEMENT_TIMEOUT_SECONDS", "soon"),
    ],
)
def test_a_bad_database_wait_is_refused_naming_the_variable(
    name: str, value: str
) -> None:
    assert refusal({name: value}).startswith(f"{name} must be")


def test_the_connection_string_gives_up_connecting_after_the_connect_timeout() -> None:
    settings = Settings.from_env({"BILLING_DB_CONNECT_TIMEOUT_SECONDS": "3"})

    params = conninfo_to_dict(settings.conninfo())

    assert params["connect_timeout"] == "3"
    assert params["options"] == "-c search_path=billing"  # no statement timeout


def test_the_request_pools_connection_string_sets_a_statement_timeout() -> None:
    settings = Settings.from_env(
        {"BILLING_DB_SCHEMA": "tenant_x", "BILLING_DB_STATEMENT_TIMEOUT_SECONDS": "2.5"}
    )

    params = conninfo_to_dict(
        settings.conninfo(application_name="api", statement_timeout=True)
    )

    assert params["options"] == "-c search_path=tenant_x -c statement_timeout=2500"
    assert (params["application_name"], params["connect_timeout"]) == ("api", "2")


def test_the_eventsourcing_pool_wait_is_the_pool_timeout_in_whole_seconds() -> None:
    settings = Settings.from_env({"BILLING_DB_POOL_TIMEOUT_SECONDS": "1.5"})

    assert settings.eventsourcing_env()["POSTGRES_CONNECT_TIMEOUT"] == "2"


def test_the_demo_uses_embedded_services_only_where_none_answers_by_default() -> None:
    settings = Settings.from_env({})

    assert (settings.embedded, settings.embedded_dir) == ("auto", Path("var/embedded"))


def test_embedded_services_are_read_from_the_environment() -> None:
    settings = Settings.from_env(
        {"BILLING_EMBEDDED": " Always ", "BILLING_EMBEDDED_DIR": "/srv/demo"}
    )

    assert (settings.embedded, settings.embedded_dir) == ("always", Path("/srv/demo"))


def test_an_unknown_embedded_mode_is_refused_naming_the_variable() -> None:
    assert refusal({"BILLING_EMBEDDED": "sometimes"}) == (
        "BILLING_EMBEDDED must be 'auto', 'always' or 'never'"
    )
