"""Canaries for the private library members civicmesh relies on: each test fails if an upgrade
renames or moves one, instead of the code silently falling back (slower builds, unchecked limits,
a lost optimisation). Where a member is only read, the test also checks what it holds.

The dbt resource's private overrides (`_cli_version`, `_initialize_dbt_core_adapter`) have their
canary in tests/orchestration/test_dagster_storage.py."""

from __future__ import annotations

import inspect
from pathlib import Path

import strawberry
from dagster._core.log_manager import LOG_RECORD_METADATA_ATTR
from dagster._core.storage.event_log.sqlite.sqlite_event_log import SqliteEventLogStorage
from openlineage.client.event_v2 import RunEvent
from openlineage.client.facet_v2 import dataset_version_dataset, error_message_run
from strawberry.schema.schema import StrawberryGraphQLCoreExecutionContext

import graphql
from gateway.fastrows import FastRowsExecutionContext
from lineage.facets import AccessDecisionRunFacet
from orchestration.dagster_storage import PooledSqliteEventLogStorage
from policies.engine import _new_enforcer

ROOT = Path(__file__).resolve().parent.parent


def test_dagster_sqlite_event_log_still_opens_every_connection_through_connect() -> None:
    """orchestration/dagster_storage.py overrides `_connect` and uses `_db_lock`,
    `_initialized_dbs` and `_initdb`: if `_connect` were renamed, the pool would never be used."""
    assert "_connect" in vars(SqliteEventLogStorage)
    assert "_connect" in vars(PooledSqliteEventLogStorage)
    assert callable(SqliteEventLogStorage._initdb)
    for caller in (SqliteEventLogStorage.run_connection, SqliteEventLogStorage.index_connection):
        assert "self._connect(" in inspect.getsource(caller)
    init = inspect.getsource(SqliteEventLogStorage.__init__)
    assert "self._db_lock" in init and "self._initialized_dbs" in init
    assert list(inspect.signature(SqliteEventLogStorage._connect).parameters) == ["self", "shard"]


def test_dagster_log_records_still_carry_dagster_meta() -> None:
    """orchestration/build.py reads `record.dagster_meta` to turn step events into progress lines."""
    assert LOG_RECORD_METADATA_ATTR == "dagster_meta"
    assert "dagster_meta" in (ROOT / "orchestration" / "build.py").read_text()


def test_strawberry_execution_context_and_graphql_core_completion_hook() -> None:
    """gateway/fastrows.py subclasses Strawberry's execution context (not exported at top level)
    and overrides graphql-core's `complete_object_value` and `complete_list_value`."""
    assert issubclass(StrawberryGraphQLCoreExecutionContext, graphql.ExecutionContext)
    assert issubclass(FastRowsExecutionContext, StrawberryGraphQLCoreExecutionContext)
    for name in ("complete_object_value", "complete_list_value"):
        hook = inspect.signature(getattr(graphql.ExecutionContext, name))
        assert list(hook.parameters) == ["self", "return_type", "field_nodes", "info", "path", "result"]
        assert name in vars(FastRowsExecutionContext)


def test_strawberry_schema_still_holds_the_graphql_core_schema_as_underscore_schema() -> None:
    """gateway/schema.py, limits.py and arguments.py read `schema._schema.type_map`."""

    @strawberry.type
    class Query:
        hello: str = "world"

    schema = strawberry.Schema(query=Query)
    assert isinstance(schema._schema, graphql.GraphQLSchema)
    assert "Query" in schema._schema.type_map


def test_openlineage_classes_still_name_their_schema_with_get_schema() -> None:
    """lineage/events.py reads `_get_schema()` for the `_schemaURL` of events built as plain data."""
    for cls in (
        RunEvent,
        AccessDecisionRunFacet,
        error_message_run.ErrorMessageRunFacet,
        dataset_version_dataset.DatasetVersionDatasetFacet,
    ):
        url = cls._get_schema()
        assert isinstance(url, str) and url.startswith("http"), (cls, url)


def test_casbin_fast_enforcer_internals_the_engine_reads() -> None:
    """policies/engine.py imports `fast_policy_filter` from `casbin.model.policy_fast` and reads the
    model's token lists and `model.model["p"]["p"].policy`, as pycasbin's FastEnforcer does."""
    from casbin.model.policy_fast import fast_policy_filter

    enforcer = _new_enforcer((ROOT / "policies" / "model.conf").read_text())
    enforcer.add_named_policies("p", [["alice", "hr", "hr.staff", "read"]])
    policy = enforcer.model.model["p"]["p"].policy
    assert [list(p) for p in policy] == [["alice", "hr", "hr.staff", "read"]]
    assert list(enforcer.model["p"]["p"].tokens) == ["p_sub", "p_dom", "p_obj", "p_act"]
    # The engine's cache key order is (domain, action): the filter keeps that slice of the lines.
    with fast_policy_filter(policy, "hr", "read"):
        assert [list(p) for p in policy] == [["alice", "hr", "hr.staff", "read"]]
    with fast_policy_filter(policy, "hr", "export"):
        assert list(policy) == []
    assert len(policy) == 1


def test_graphql_core_members_the_shape_cache_relies_on() -> None:
    """gateway/limits.py collects literal value nodes by overriding the parser's `parse_int`,
    `parse_float` and `parse_string_literal`; gateway/shapes.py reads the lexer's token links
    (`Token.next`) and calls `ValuesOfCorrectTypeRule.is_valid_value_node` with a context that
    offers only `get_input_type`, `hide_suggestions` and `report_error`."""
    import re

    from graphql.language.parser import Parser

    kinds = graphql.TokenKind
    names = Parser._parse_value_literal_method_names
    literal_kinds = (kinds.INT, kinds.FLOAT, kinds.STRING, kinds.BLOCK_STRING)
    assert [names[k] for k in literal_kinds] == ["int", "float", "string_literal", "string_literal"]
    lexer = graphql.Lexer(graphql.Source("{ a }"))
    start = lexer.token
    lexer.advance()
    assert start.next is lexer.token
    source = inspect.getsource(graphql.ValuesOfCorrectTypeRule.is_valid_value_node)
    assert set(re.findall(r"self\.context\.(\w+)", source)) == {"get_input_type", "hide_suggestions"}
    assert set(re.findall(r"self\.(\w+)\(", source)) == {"report_error"}
