"""Static GraphQL types shared by every generated product type (filters, pages, catalog)."""

from __future__ import annotations

import datetime as dt
from enum import Enum
from typing import TYPE_CHECKING, NewType

import strawberry

# GraphQL Int is 32-bit; BIGINT columns and row counts need a wider scalar. The type checker sees
# the NewType (a scalar wrapper is a value, not a type to it); Strawberry sees the scalar.
if TYPE_CHECKING:
    BigInt = int
else:
    BigInt = strawberry.scalar(
        NewType("BigInt", int),
        serialize=int,
        parse_value=int,
        description="A 64-bit integer.",
    )


@strawberry.enum
class SortDirection(Enum):
    ASC = "ASC"
    DESC = "DESC"


# Filter inputs per column type. Python names match query.OPERATORS; GraphQL names are camelCase.


@strawberry.input(description="Conditions on a text column; all given conditions must hold.")
class StringFilter:
    eq: str | None = None
    ne: str | None = None
    in_: list[str] | None = strawberry.field(default=None, name="in")
    lt: str | None = None
    lte: str | None = None
    gt: str | None = None
    gte: str | None = None
    between: list[str] | None = None
    is_null: bool | None = None
    contains: str | None = None
    starts_with: str | None = None


@strawberry.input(description="Conditions on an integer column.")
class IntFilter:
    eq: int | None = None
    ne: int | None = None
    in_: list[int] | None = strawberry.field(default=None, name="in")
    lt: int | None = None
    lte: int | None = None
    gt: int | None = None
    gte: int | None = None
    between: list[int] | None = None
    is_null: bool | None = None


@strawberry.input(description="Conditions on a 64-bit integer column.")
class BigIntFilter:
    eq: BigInt | None = None
    ne: BigInt | None = None
    in_: list[BigInt] | None = strawberry.field(default=None, name="in")
    lt: BigInt | None = None
    lte: BigInt | None = None
    gt: BigInt | None = None
    gte: BigInt | None = None
    between: list[BigInt] | None = None
    is_null: bool | None = None


@strawberry.input(description="Conditions on a number column.")
class FloatFilter:
    eq: float | None = None
    ne: float | None = None
    in_: list[float] | None = strawberry.field(default=None, name="in")
    lt: float | None = None
    lte: float | None = None
    gt: float | None = None
    gte: float | None = None
    between: list[float] | None = None
    is_null: bool | None = None


@strawberry.input(description="Conditions on a true/false column.")
class BooleanFilter:
    eq: bool | None = None
    ne: bool | None = None
    is_null: bool | None = None


@strawberry.input(description="Conditions on a date column.")
class DateFilter:
    eq: dt.date | None = None
    ne: dt.date | None = None
    in_: list[dt.date] | None = strawberry.field(default=None, name="in")
    lt: dt.date | None = None
    lte: dt.date | None = None
    gt: dt.date | None = None
    gte: dt.date | None = None
    between: list[dt.date] | None = None
    is_null: bool | None = None


@strawberry.input(description="Conditions on a timestamp column.")
class DateTimeFilter:
    eq: dt.datetime | None = None
    ne: dt.datetime | None = None
    in_: list[dt.datetime] | None = strawberry.field(default=None, name="in")
    lt: dt.datetime | None = None
    lte: dt.datetime | None = None
    gt: dt.datetime | None = None
    gte: dt.datetime | None = None
    between: list[dt.datetime] | None = None
    is_null: bool | None = None


@strawberry.type
class PageInfo:
    has_next_page: bool
    end_cursor: str | None


@strawberry.type(description="The immutable snapshot a page was read from.")
class SnapshotRef:
    id: str
    published_at: dt.datetime
    row_count: BigInt | None = None


@strawberry.type
class RowFilterInfo:
    column: str
    values: list[str]


@strawberry.type
class RoleInfo:
    role: str
    department: str


@strawberry.type
class Me:
    user: str
    email: str | None
    display_name: str | None
    department: str | None
    roles: list[RoleInfo]
