"""The PostgreSQL fixture: a real server from Debian's package, reached with psycopg's
async API, LISTEN/NOTIFY across connections, fresh databases that start empty and go
away, no process left behind, and a clear error when PostgreSQL is missing."""

from __future__ import annotations

import asyncio
import os
import pwd
from pathlib import Path

import psycopg
import pytest

# Registers the fixtures for the whole session (once, however many modules name it);
# rewritten like the conftest's fixture plugins, before the import below.
pytest_plugins = ["tests.fixtures.postgres"]
pytest.register_assert_rewrite("tests.fixtures.postgres")

from tests.fixtures.postgres import (  # noqa: E402
    DEFAULT_DATABASE,
    PostgresNotInstalled,
    PostgresServer,
    find_postgres_bin,
)

USER_TABLES = """
    SELECT count(*) FROM information_schema.tables
    WHERE table_schema NOT IN ('pg_catalog', 'information_schema')
"""


async def test_postgres_url_names_a_loopback_server_with_the_xds_database(postgres_url: str) -> None:
    assert postgres_url.startswith("postgresql://postgres@127.0.0.1:")
    assert postgres_url.endswith(f"/{DEFAULT_DATABASE}")
    async with await psycopg.AsyncConnection.connect(postgres_url) as conn:
        cur = await conn.execute("SELECT current_database(), current_setting('fsync'), "
                                 "current_setting('listen_addresses')")
        assert await cur.fetchone() == (DEFAULT_DATABASE, "off", "127.0.0.1")


def test_server_runs_as_the_postgres_user_not_root(postgres: PostgresServer) -> None:
    pid = postgres.pid
    assert pid is not None
    uid = int(next(line for line in Path(f"/proc/{pid}/status").read_text().splitlines()
                   if line.startswith("Uid:")).split()[1])
    if os.geteuid() == 0:
        assert uid == pwd.getpwnam("postgres").pw_uid
    else:
        assert uid == os.geteuid()


async def test_listen_notify_round_trip(postgres_url: str) -> None:
    async with await psycopg.AsyncConnection.connect(postgres_url, autocommit=True) as listener, \
            await psycopg.AsyncConnection.connect(postgres_url, autocommit=True) as sender:
        await listener.execute("LISTEN xds_changes")
        await sender.execute("SELECT pg_notify('xds_changes', %s)", ["filter:add-header:3"])
        await sender.execute("NOTIFY xds_changes, 'filter:add-header:4'")
        received = [n async for n in listener.notifies(timeout=5.0, stop_after=2)]
    assert [(n.channel, n.payload) for n in received] == [
        ("xds_changes", "filter:add-header:3"), ("xds_changes", "filter:add-header:4")]
    assert all(n.pid != 0 for n in received)


async def test_notify_inside_a_transaction_arrives_only_on_commit(postgres_url: str) -> None:
    async with await psycopg.AsyncConnection.connect(postgres_url, autocommit=True) as listener, \
            await psycopg.AsyncConnection.connect(postgres_url) as sender:
        await listener.execute("LISTEN xds_tx")
        await sender.execute("NOTIFY xds_tx, 'rolled back'")
        await sender.rollback()
        await sender.execute("NOTIFY xds_tx, 'committed'")
        await sender.commit()
        received = [n.payload async for n in listener.notifies(timeout=5.0, stop_after=1)]
        assert received == ["committed"]
        assert [n async for n in listener.notifies(timeout=0.3)] == []


async def test_fresh_database_is_empty_and_separate(fresh_database: str, postgres_url: str) -> None:
    assert fresh_database != postgres_url
    name = fresh_database.rsplit("/", 1)[1]
    assert name.startswith(f"{DEFAULT_DATABASE}_")
    async with await psycopg.AsyncConnection.connect(fresh_database, autocommit=True) as conn:
        cur = await conn.execute(USER_TABLES)
        assert await cur.fetchone() == (0,)
        await conn.execute("CREATE TABLE revisions (id bigint PRIMARY KEY)")
    async with await psycopg.AsyncConnection.connect(postgres_url) as shared:
        cur = await shared.execute("SELECT to_regclass('public.revisions')")
        assert await cur.fetchone() == (None,)


def test_a_fresh_database_is_dropped_after_its_test(postgres: PostgresServer) -> None:
    url = postgres.create_database()
    name = url.rsplit("/", 1)[1]
    with psycopg.connect(url):  # left open: the drop ends it (WITH FORCE)
        postgres.drop_database(name)
    with psycopg.connect(postgres.url("postgres")) as conn:
        assert conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", [name]).fetchone() is None


def test_fresh_databases_are_distinct_per_call(postgres: PostgresServer) -> None:
    urls = [postgres.create_database() for _ in range(2)]
    try:
        assert urls[0] != urls[1]
    finally:
        for url in urls:
            postgres.drop_database(url.rsplit("/", 1)[1])


def test_stop_leaves_no_process_and_no_directory() -> None:
    with PostgresServer.start() as server:
        pid = server.pid
        assert pid is not None
        with psycopg.connect(server.url("postgres")) as conn:
            backend = conn.info.backend_pid
        base_dir = server.base_dir
    for gone in (pid, backend):
        assert not Path(f"/proc/{gone}").exists() or "zombie" in Path(f"/proc/{gone}/status").read_text()
    assert not base_dir.exists()
    server.stop()  # idempotent


def test_missing_postgres_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(PostgresNotInstalled, match=r"apt-get install postgresql"):
        find_postgres_bin(search_glob=str(tmp_path / "*" / "bin"), path=str(tmp_path))


def test_binaries_on_path_are_found_when_not_under_usr_lib(tmp_path: Path) -> None:
    real = find_postgres_bin()
    fake = tmp_path / "bin"
    fake.mkdir()
    for name in ("initdb", "pg_ctl", "postgres"):
        (fake / name).symlink_to(real / name)
    # Resolved through the symlink to the real directory, which holds all three.
    assert find_postgres_bin(search_glob=str(tmp_path / "none" / "*"), path=str(fake)) == real.resolve()


async def test_many_connections_at_once(postgres_url: str) -> None:
    async def one(i: int) -> int:
        async with await psycopg.AsyncConnection.connect(postgres_url) as conn:
            cur = await conn.execute("SELECT %s::int + 1", [i])
            row = await cur.fetchone()
            assert row is not None
            return int(row[0])

    assert await asyncio.gather(*(one(i) for i in range(20))) == list(range(1, 21))
