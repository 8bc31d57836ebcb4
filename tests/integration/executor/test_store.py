"""The executor's store on SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from libs.db import Database, page
from libs.errors import AlreadyExists, InvalidArgument, NotFound
from services.executor.definitions import JobDefinition, Source, Step, validate_definition
from services.executor.store import ExecutorStore

ACTIONS = {"crawl", "reindex", "corpus_summary"}


def validate(d: JobDefinition, sources: Any, graph: Any) -> Any:
    return validate_definition(d, actions=ACTIONS, known_sources=sources, graph=graph)


def definition(id: str, **kw: Any) -> JobDefinition:
    return JobDefinition(
        id=id, name=kw.pop("name", id.title()), type=kw.pop("type", "custom"), steps=[Step("r", "reindex")], **kw
    )


@pytest.fixture
def store(executor_db: Database) -> ExecutorStore:
    return ExecutorStore(executor_db)


async def test_create_then_get_reads_back_the_same(store: ExecutorStore) -> None:
    saved, changed = await store.save_definition(
        definition("a", post_jobs=["b"], schedule="0 * * * *"), mode="create", validate=validate
    )
    assert changed and saved.version == 1
    got = await store.get_definition("a")
    assert got.content() == saved.content()
    assert got.created_at is not None and got.created_at.tzinfo is not None


async def test_create_refuses_an_existing_id(store: ExecutorStore) -> None:
    await store.save_definition(definition("a"), mode="create", validate=validate)
    with pytest.raises(AlreadyExists):
        await store.save_definition(definition("a", name="Other"), mode="create", validate=validate)
    assert (await store.get_definition("a")).name == "A"


async def test_update_of_a_missing_id_is_not_found(store: ExecutorStore) -> None:
    with pytest.raises(NotFound):
        await store.save_definition(definition("ghost"), mode="update", validate=validate)


async def test_update_bumps_the_version_only_on_change(store: ExecutorStore) -> None:
    await store.save_definition(definition("a"), mode="create", validate=validate)
    same, changed = await store.save_definition(definition("a"), mode="upsert", validate=validate)
    assert (same.version, changed) == (1, False)
    new, changed = await store.save_definition(definition("a", description="x"), mode="update", validate=validate)
    assert (new.version, changed) == (2, True)
    assert new.created_at == same.created_at


async def test_cycles_are_checked_against_the_stored_catalogue(store: ExecutorStore) -> None:
    await store.save_definition(definition("a", post_jobs=["b"]), mode="create", validate=validate)
    with pytest.raises(InvalidArgument) as err:
        await store.save_definition(definition("b", post_jobs=["a"]), mode="create", validate=validate)
    assert str(err.value) == "post_jobs: cycle b -> a -> b"
    with pytest.raises(NotFound):
        await store.get_definition("b")  # nothing half-written


async def test_list_filters_orders_and_counts(store: ExecutorStore) -> None:
    for i, name in enumerate(["c", "a", "b"]):
        await store.save_definition(
            definition(name, type="crawler" if i else "custom", enabled=i != 2), mode="create", validate=validate
        )
    items, total = await store.list_definitions(page(0, 0, "name", "asc", allowed=("name", "created_at")))
    assert [d.id for d in items] == ["a", "b", "c"] and total == 3
    items, total = await store.list_definitions(page(1, 0, "name", "asc", allowed=("name",)), type="crawler")
    assert [d.id for d in items] == ["a"] and total == 2  # total honours the filter, not the page
    items, total = await store.list_definitions(page(0, 0, "", "", allowed=("created_at",)), enabled=False)
    assert [d.id for d in items] == ["b"] and total == 1


async def test_delete(store: ExecutorStore) -> None:
    await store.save_definition(definition("a"), mode="create", validate=validate)
    await store.delete_definition("a")
    with pytest.raises(NotFound):
        await store.delete_definition("a")


async def test_sources_keep_auth_when_asked(store: ExecutorStore) -> None:
    source = Source(id="s", name="S", type="web", base_url="https://a/", auth_headers={"Authorization": "Bearer t"})
    await store.save_source(source, mode="create")
    edited = Source(id="s", name="S2", type="web", base_url="https://a/")
    saved, _ = await store.save_source(edited, mode="update", keep_auth=True)
    assert saved.name == "S2" and saved.auth_headers == {"Authorization": "Bearer t"}
    cleared, _ = await store.save_source(edited, mode="update", keep_auth=False)
    assert not cleared.has_auth


@pytest.mark.parametrize(
    "base_url",
    ["https://a/docs/", "HTTPS://A/", "https://a:443/"],
    ids=["other-path", "case", "default-port"],
)
async def test_auth_is_kept_on_the_same_origin(store: ExecutorStore, base_url: str) -> None:
    await store.save_source(_with_auth("https://a/"), mode="create")
    saved, _ = await store.save_source(
        Source(id="s", name="S", type="web", base_url=base_url), mode="update", keep_auth=True
    )
    assert saved.base_url == base_url and saved.auth_headers == {"Authorization": "Bearer t"}


@pytest.mark.parametrize(
    "base_url",
    ["https://b/", "http://a/", "https://a:8443/", "https://a.evil/"],
    ids=["host", "scheme", "port", "suffix"],
)
async def test_kept_auth_never_moves_to_another_origin(store: ExecutorStore, base_url: str) -> None:
    await store.save_source(_with_auth("https://a/"), mode="create")
    with pytest.raises(InvalidArgument) as err:
        await store.save_source(Source(id="s", name="S", type="web", base_url=base_url), mode="update", keep_auth=True)
    assert [(v.field, v.description) for v in err.value.violations] == [
        ("auth", "credentials were given for another host; send them again")
    ]
    unchanged = await store.get_source("s")
    assert unchanged.base_url == "https://a/" and unchanged.auth_headers == {"Authorization": "Bearer t"}


async def test_another_origin_is_fine_with_new_auth_or_none_kept(store: ExecutorStore) -> None:
    await store.save_source(_with_auth("https://a/"), mode="create")
    resent, _ = await store.save_source(_with_auth("https://b/", token="u"), mode="update", keep_auth=False)
    assert resent.auth_headers == {"Authorization": "Bearer u"}
    await store.save_source(Source(id="plain", name="P", type="web", base_url="https://a/"), mode="create")
    moved, _ = await store.save_source(
        Source(id="plain", name="P", type="web", base_url="https://b/"), mode="update", keep_auth=True
    )
    assert moved.base_url == "https://b/" and not moved.has_auth


def _with_auth(base_url: str, token: str = "t") -> Source:
    return Source(id="s", name="S", type="web", base_url=base_url, auth_headers={"Authorization": f"Bearer {token}"})


class _PausingStore(ExecutorStore):
    """Pauses a definition read between reading the rows and caching them, when asked to."""

    def __init__(self, db: Database) -> None:
        super().__init__(db, cache_ttl=3600)
        self.pause = False
        self.read = asyncio.Event()
        self.resume = asyncio.Event()

    async def _read_definition_with_sources(self, definition_id: str) -> Any:
        found = await super()._read_definition_with_sources(definition_id)
        if self.pause:
            self.read.set()
            await self.resume.wait()
        return found


async def test_a_read_older_than_a_write_never_caches_the_old_definition(store: ExecutorStore) -> None:
    paused = _PausingStore(store.db)
    await paused.save_definition(definition("a", description="v1"), mode="create", validate=validate)
    paused.pause = True
    slow = asyncio.create_task(paused.definition_with_sources("a"))
    await paused.read.wait()  # v1 read, not cached yet

    await paused.save_definition(definition("a", description="v2"), mode="update", validate=validate)
    paused.pause = False
    paused.resume.set()

    assert (await slow)[0].description == "v1"  # it began before the write: fine to answer v1
    assert (await paused.definition_with_sources("a"))[0].description == "v2"
