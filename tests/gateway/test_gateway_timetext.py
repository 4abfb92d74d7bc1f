"""`gateway.timetext` against DuckDB itself: every text DuckDB writes for a date or timestamp is
accepted and casts back to the same value, and no text it accepts makes DuckDB's cast fail (a
forged cursor is a 400 before SQL, never a conversion error: a 500)."""

from __future__ import annotations

import random

import duckdb
import pytest

from gateway import timetext

# Random values over DuckDB's whole range in both eras (the last partial years left out), and the
# infinities: (SQL of one value from `r`, a uniform double in [0, 1), and its cast type).
_VALUES = {
    timetext.DATE: "DATE '1970-01-01' + CAST((r * 2 - 1) * 2146000000 AS INTEGER)",
    timetext.TIMESTAMP: "make_timestamp(CAST((r * 2 - 1) * 9.16e18 AS BIGINT))",
    timetext.TIMESTAMPTZ: "CAST(make_timestamp(CAST((r * 2 - 1) * 9.16e18 AS BIGINT)) AS TIMESTAMPTZ)",
}


@pytest.mark.parametrize("cast", sorted(_VALUES))
def test_duckdbs_own_text_is_accepted_and_round_trips(cast: str) -> None:
    with duckdb.connect() as con:
        values = con.execute(
            f"SELECT CAST(v AS VARCHAR) FROM (SELECT {_VALUES[cast]} AS v FROM "
            "(SELECT random() AS r FROM range(2000)) UNION ALL "
            f"SELECT CAST('infinity' AS {cast}) UNION ALL SELECT CAST('-infinity' AS {cast}) UNION ALL "
            f"SELECT CAST('2020-03-08 07:30:00.000001' AS {cast}))"
        ).fetchall()
        texts = [text for (text,) in values]
        assert any("(BC)" in t for t in texts) and any(
            t.split("-")[0].isdigit() and len(t.split("-")[0]) > 4 for t in texts
        )
        for text in texts:
            assert timetext.checked(text, cast) == text
            (back,) = con.execute(f"SELECT CAST(CAST(? AS {cast}) AS VARCHAR)", [text]).fetchone() or ("",)
            assert back == text


def _mutations(text: str, rng: random.Random) -> list[str]:
    """`text` with one character replaced, dropped or doubled, a few hundred ways."""
    alphabet = "0123456789-+: .()BCTZinfty\u0663"
    out = []
    for _ in range(300):
        i = rng.randrange(len(text))
        edit = rng.randrange(3)
        if edit == 0:
            out.append(text[:i] + rng.choice(alphabet) + text[i + 1 :])
        elif edit == 1:
            out.append(text[:i] + text[i + 1 :])
        else:
            out.append(text[:i] + text[i] + text[i:])
    return out


@pytest.mark.parametrize("cast", sorted(_VALUES))
def test_no_text_it_accepts_fails_duckdbs_cast(cast: str) -> None:
    rng = random.Random(16)
    seeds = {
        timetext.DATE: ["2020-02-29", "0044-03-15 (BC)", "5881579-12-31", "infinity"],
        timetext.TIMESTAMP: [
            "2020-02-29 23:59:59.999999",
            "0001-01-01 (BC) 00:00:00",
            "294246-12-31 23:59:59",
        ],
        timetext.TIMESTAMPTZ: [
            "2020-02-29 23:59:59.5+00",
            "2021-06-30 12:00:00-09:30",
            "0044-03-15 (BC) 00:00:00+14",
        ],
    }[cast]
    accepted = 0
    with duckdb.connect() as con:
        for seed in seeds:
            for text in [seed, *_mutations(seed, rng)]:
                try:
                    timetext.checked(text, cast)
                except ValueError:
                    continue
                accepted += 1
                con.execute(f"SELECT CAST(? AS {cast})", [text]).fetchall()  # must not raise
    assert accepted > len(seeds)  # the mutations left some valid values, and each cast
