"""`billing demo --database --namespace`: a second demo shares nothing."""

from __future__ import annotations

import click
import pytest

from interfaces.cli import demo_environment

SERVER = "postgresql://ops:s3cret@db.internal:5433/billing?sslmode=require"


def test_another_database_on_the_same_server_and_its_own_namespace() -> None:
    changes = demo_environment({"DATABASE_URL": SERVER}, "billing_b", "demo_b")

    assert changes == {
        "DATABASE_URL": "postgresql://ops:s3cret@db.internal:5433/billing_b?sslmode=require",
        "BILLING_REDIS_NAMESPACE": "demo_b",
    }


def test_the_namespace_follows_the_database_unless_given() -> None:
    changes = demo_environment({}, "billing_b", None)

    assert changes == {
        "DATABASE_URL": "postgresql://postgres@127.0.0.1:5432/billing_b",
        "BILLING_REDIS_NAMESPACE": "billing_b",
    }


def test_nothing_given_changes_nothing() -> None:
    assert demo_environment({"DATABASE_URL": SERVER}, None, None) == {}
    assert demo_environment({}, None, "demo_b") == {"BILLING_REDIS_NAMESPACE": "demo_b"}


@pytest.mark.parametrize(
    ("database", "namespace"), [("bad name", None), (None, "a:b"), ("x" * 64, None)]
)
def test_names_that_are_not_plain_are_refused(
    database: str | None, namespace: str | None
) -> None:
    with pytest.raises(click.BadParameter):
        demo_environment({}, database, namespace)
