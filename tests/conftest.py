"""Session-wide fixtures for tests against the local Kubernetes cluster (see hack/README.md).

The cluster is started once (or reused when already running) and left running
afterwards unless KUBESOAR_CLUSTER_TEARDOWN=1; KUBESOAR_KUBECONFIG points the
tests at another cluster instead. Tests that use it are marked `cluster`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest
from support.cluster import ClusterHandle, namespace_factory, start_cluster, stop_cluster_if_asked
from support.postgres import PostgresHandle, create_template, fresh_database, running_server


@pytest.fixture(scope="session")
def local_cluster() -> Iterator[ClusterHandle]:
    handle = start_cluster()
    yield handle
    stop_cluster_if_asked(handle)


@pytest.fixture(scope="session")
def k8s_client(local_cluster: ClusterHandle) -> Iterator[Any]:
    """A kubernetes.client.ApiClient for the local cluster (as its admin)."""
    from kubernetes import config

    api_client = config.new_client_from_config(config_file=str(local_cluster.kubeconfig))
    yield api_client
    api_client.close()


@pytest.fixture
def make_namespace(k8s_client: Any) -> Iterator[Callable[..., str]]:
    """make_namespace(prefix="t", labels=None) -> a fresh namespace, deleted after the test."""
    make, cleanup = namespace_factory(k8s_client)
    yield make
    cleanup()


@pytest.fixture
def namespace(make_namespace: Callable[..., str]) -> str:
    return make_namespace()


# A real PostgreSQL (tests/support/postgres.py): one server per session, a database per test.
@pytest.fixture(scope="session")
def postgres() -> Iterator[PostgresHandle]:
    with running_server() as handle:
        yield handle


@pytest.fixture(scope="session")
def postgres_template(postgres: PostgresHandle) -> str:
    return create_template(postgres)


@pytest.fixture
def database_url(postgres: PostgresHandle, postgres_template: str) -> Iterator[str]:
    """URL of a new database holding the current schema, dropped after the test."""
    with fresh_database(postgres, postgres_template) as url:
        yield url


@pytest.fixture
def empty_database_url(postgres: PostgresHandle) -> Iterator[str]:
    """URL of a new, empty database (never migrated), dropped after the test."""
    with fresh_database(postgres, None) as url:
        yield url
