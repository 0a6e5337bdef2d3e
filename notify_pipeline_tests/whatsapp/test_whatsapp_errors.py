"""The error-code table: one test per retry class, and the runbook's four wrong rows corrected;
the special treatments of codes (columns of the table) and the database's copies of them. Unit
tests, but for the last ones, which read the migrated database's functions."""

from __future__ import annotations

import re

import psycopg
import pytest

from notify_pipeline.engine.policy import WINDOW_CODE
from notify_pipeline.reporting.alerts.readings import META_PAIR_LIMIT
from notify_pipeline.reporting.figures import FILTERED_CODES
from notify_pipeline.whatsapp.client import parse_error, parse_send_response
from notify_pipeline.whatsapp.errors import CODES, ErrorClass, classify, codes_with, describe, lookup


@pytest.mark.parametrize(
    ("error_class", "codes"),
    [
        (ErrorClass.TRANSIENT, [1, 2, 131000, 131016, 131057, 133004, 133015, 2494100]),
        (ErrorClass.THROTTLED, [4, 613, 80007, 80008, 130429, 131048, 131049, 131056, 131064, 133016]),
        (
            ErrorClass.PERMANENT,
            [100, 130403, 130497, 131008, 131009, 131026, 131050, 131063, 135000],
        ),
        (ErrorClass.ACCOUNT, [33, 368, 131031, 131037, 131042, 131045, 133010]),
        (ErrorClass.AUTH, [0, 3, 10, 190, 200, 250, 299, 131005]),
        (ErrorClass.OUTSIDE_WINDOW, [131047]),
        (ErrorClass.TEMPLATE, [132000, 132001, 132005, 132007, 132008, 132012, 132015, 132016, 132018]),
    ],
)
def test_codes_of_each_class(error_class: ErrorClass, codes: list[int]) -> None:
    assert {code: classify(code, 400) for code in codes} == dict.fromkeys(codes, error_class)


def test_every_documented_code_has_a_meaning_a_fix_and_a_status() -> None:
    for entry in CODES.values():
        assert entry.title and entry.fix
        assert 400 <= entry.http_status < 600


@pytest.mark.parametrize(
    ("code", "runbook_says", "error_class", "meaning_fragment"),
    [
        (131000, "Template not found", ErrorClass.TRANSIENT, "Something went wrong"),
        (131047, "Rate limit exceeded", ErrorClass.OUTSIDE_WINDOW, "24 hours"),
        (135000, "Account restricted", ErrorClass.PERMANENT, "Generic user error"),
        (132000, "Temporary ban", ErrorClass.TEMPLATE, "parameter count"),
    ],
)
def test_the_runbooks_wrong_rows_follow_meta(code, runbook_says, error_class, meaning_fragment) -> None:
    entry = lookup(code)
    assert entry.error_class is error_class
    assert meaning_fragment in entry.title
    assert runbook_says.lower() not in entry.title.lower()


def test_the_codes_the_runbook_meant() -> None:
    assert lookup(132001).error_class is ErrorClass.TEMPLATE  # template not found
    assert {lookup(c).error_class for c in (130429, 131056, 131048)} == {ErrorClass.THROTTLED}  # rate limits
    assert lookup(368).error_class is ErrorClass.ACCOUNT  # the real temporary ban: stops the drain
    assert "template" in describe(131047)


@pytest.mark.parametrize(
    ("code", "status", "expected"),
    [
        (None, None, ErrorClass.TRANSIENT),  # timeouts and connection errors
        (None, 429, ErrorClass.TRANSIENT),
        (None, 503, ErrorClass.TRANSIENT),
        (987654, 500, ErrorClass.TRANSIENT),  # undocumented code on a server error
        (987654, 400, ErrorClass.PERMANENT),  # undocumented code on a client error: do not burn the queue
        (None, 401, ErrorClass.AUTH),
    ],
)
def test_unknown_codes_fall_back_on_http_status(code, status, expected) -> None:
    assert classify(code, status) is expected


@pytest.mark.parametrize(
    ("status", "body"),
    [(503, b"<html>Service Unavailable</html>"), (429, b""), (400, b"not json"), (500, b'{"oops": 1}')],
)
def test_non_json_or_empty_error_bodies_are_transient(status: int, body: bytes) -> None:
    error = parse_error(status, body)
    assert error.error_class is ErrorClass.TRANSIENT
    assert error.code is None
    assert error.label == f"http_{status}"
    assert f"HTTP {status}" in error.message


def test_meta_error_body_is_parsed_in_full() -> None:
    body = (
        b'{"error": {"message": "(#132001) Template name does not exist in the translation", '
        b'"type": "OAuthException", "code": 132001, "error_subcode": 2494073, '
        b'"error_data": {"messaging_product": "whatsapp", "details": "template name (x) does not exist in en"}, '
        b'"fbtrace_id": "AbC"}}'
    )
    error = parse_error(404, body)
    assert (error.code, error.subcode, error.fbtrace_id, error.http_status) == (132001, 2494073, "AbC", 404)
    assert error.error_class is ErrorClass.TEMPLATE
    assert error.details == "template name (x) does not exist in en"
    assert error.label == "132001"
    assert "132001" in error.describe() and "does not exist in en" in error.describe()
    assert not error.retryable


@pytest.mark.parametrize(
    "body",
    [b"", b"[]", b'{"messages": []}', b'{"messages": [{"id": ""}]}', b'{"contacts": []}', b"<html>"],
)
def test_malformed_success_bodies_are_classified_not_raised(body: bytes) -> None:
    result = parse_send_response(200, body, 0.01)
    assert not result.ok
    assert result.error.kind == "bad_response"
    assert result.error.error_class is ErrorClass.TRANSIENT


def test_success_body_gives_wamid_wa_id_and_pacing_status() -> None:
    body = (
        b'{"messaging_product": "whatsapp", "contacts": [{"input": "+16505551234", "wa_id": "16505551234"}],'
        b' "messages": [{"id": "wamid.HBgL", "message_status": "accepted"}]}'
    )
    result = parse_send_response(200, body, 0.02)
    assert result.ok
    assert (result.wamid, result.wa_id, result.message_status) == ("wamid.HBgL", "16505551234", "accepted")


# -- special treatments: columns of the table, and the SQL's copies of them --------------------


def test_each_special_treatment_names_the_codes_meta_gives_it() -> None:
    assert codes_with(lambda e: e.holds_template) == ("132015", "132016")
    assert codes_with(lambda e: e.pair_limit) == ("131056",) == (META_PAIR_LIMIT,)
    assert codes_with(lambda e: e.filtered) == ("131050",)
    assert codes_with(lambda e: e.requeued_late) == ("131049",)
    assert WINDOW_CODE == "131047"
    assert FILTERED_CODES == ("opted_out", "marketing_opted_out", "131050")


def test_special_treatments_fit_the_class_of_their_codes() -> None:
    for entry in CODES.values():
        if entry.holds_template:
            assert entry.error_class is ErrorClass.TEMPLATE
        if entry.pair_limit or entry.requeued_late:
            # Deferred, and bounded: the trigger of 0009 takes requeued_late's bound as its argument.
            assert entry.error_class is ErrorClass.THROTTLED and entry.max_deferrals is not None
        if entry.filtered:
            assert entry.error_class is ErrorClass.PERMANENT and entry.never_retry


def _function(conn: psycopg.Connection, name: str) -> str:
    return conn.execute("SELECT pg_get_functiondef(%s::regproc)", (name,)).fetchone()[0]


def _trigger(conn: psycopg.Connection, name: str) -> str:
    return conn.execute(
        "SELECT pg_get_triggerdef(oid) FROM pg_trigger WHERE tgname = %s AND NOT tgisinternal", (name,)
    ).fetchone()[0]


def test_the_counters_filter_the_codes_figures_filter(db) -> None:
    # notify_outcome_counter (0008) counts a failed or cancelled row with these codes as filtered.
    sql = _function(db, "notify_outcome_counter")
    lists = re.findall(
        r"p_code IN \(([^)]*)\) THEN (?:'filtered'|jsonb_build_object\(\s*'domain', p_domain, 'reason')", sql
    )
    assert len(lists) == 2
    for found in lists:
        assert tuple(re.findall(r"'([^']*)'", found)) == FILTERED_CODES


def test_the_late_requeue_trigger_takes_the_tables_codes_and_bound(db) -> None:
    (code,) = codes_with(lambda e: e.requeued_late)
    trigger = _trigger(db, "notifications_late_marketing_cap")
    assert re.findall(r"last_error_code = '(\w+)'", trigger) == [code]
    bound = re.search(r"EXECUTE FUNCTION notifications_late_marketing_cap\('(\d+)'\)", trigger).group(1)
    assert int(bound) == CODES[int(code)].max_deferrals
    body = _function(db, "notifications_late_marketing_cap")
    assert set(re.findall(r"\b\d{6}\b", body)) == {code}


def test_every_meta_code_the_database_names_is_a_treatment_of_the_table(db) -> None:
    """A code written into SQL is a special case: it must be one the table says the SQL treats."""
    treated = set(codes_with(lambda e: e.filtered or e.requeued_late))
    definitions = db.execute(
        "SELECT pg_get_functiondef(p.oid) FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace "
        "WHERE n.nspname = 'public' AND p.prokind = 'f' "
        "UNION ALL SELECT pg_get_triggerdef(oid) FROM pg_trigger WHERE NOT tgisinternal"
    ).fetchall()
    quoted = {code for (text,) in definitions for code in re.findall(r"'\{?\(?(\d{6})\b", text)}
    assert {code for code in quoted if int(code) in CODES} == treated
