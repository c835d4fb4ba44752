"""Property tests of the pure arithmetic and parsing: durations, renewal time, backoff, names
and the manifest splitter.

Hypothesis runs derandomized and without its example database, so a run is reproducible
and leaves no files behind.
"""

from __future__ import annotations

import ipaddress
import re
import string
import unicodedata
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from hypothesis import assume, example, given, settings
from hypothesis import strategies as st

from gitcert import durations, names, pki, policies
from gitcert.errors import Problem
from gitcert.manifests import Document, split_documents

# Reproducible, and no .hypothesis/ directory in the work tree.
reproducible = settings(database=None, derandomize=True, deadline=None)

# --- durations -------------------------------------------------------------------------------

UNIT_SECONDS = {
    "ns": Decimal("1e-9"),
    "us": Decimal("1e-6"),
    "µs": Decimal("1e-6"),  # U+00B5 MICRO SIGN
    "μs": Decimal("1e-6"),  # U+03BC GREEK SMALL LETTER MU
    "ms": Decimal("1e-3"),
    "s": Decimal(1),
    "m": Decimal(60),
    "h": Decimal(3600),
}
# Go's time.ParseDuration grammar, ASCII digits only; "0" alone needs no unit.
GO_DURATION = re.compile(
    r"[+]?(0|((?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:ns|us|µs|μs|ms|s|m|h))+)", re.ASCII
)

whole_seconds = st.integers(min_value=0, max_value=durations.MAX_SECONDS).map(
    lambda s: timedelta(seconds=s)
)


@st.composite
def go_terms(draw: st.DrawFn, units: str = "all") -> tuple[str, Decimal]:
    """One term such as ``90m``, ``1.5h`` or ``.25s``, with its exact value in seconds."""
    whole = draw(st.integers(min_value=0, max_value=10**6))
    unit = draw(st.sampled_from(["s", "m", "h"] if units == "whole" else list(UNIT_SECONDS)))
    if units == "whole":
        return f"{whole}{unit}", whole * UNIT_SECONDS[unit]
    fraction = draw(st.one_of(st.none(), st.text(string.digits, max_size=9)))
    if fraction is None:
        number = str(whole)
    elif draw(st.booleans()) and fraction:
        number = f".{fraction}"
    else:
        number = f"{whole}.{fraction}"
    return f"{number}{unit}", Decimal(number) * UNIT_SECONDS[unit]


@reproducible
@given(whole_seconds)
@example(timedelta(0))
@example(timedelta(hours=2160))
def test_format_then_parse_gives_back_whole_seconds(value: timedelta) -> None:
    assert durations.parse(durations.format(value)) == value


@pytest.mark.parametrize(
    ("seconds", "text"),
    [(0, "0s"), (45, "45s"), (90 * 60, "1h30m0s"), (61, "1m1s"), (2160 * 3600, "2160h0m0s")],
    ids=lambda value: str(value),
)
def test_format_writes_go_style(seconds: int, text: str) -> None:
    assert durations.format(timedelta(seconds=seconds)) == text


@reproducible
@given(st.lists(go_terms("whole"), min_size=1, max_size=6))
def test_parse_of_concatenated_whole_terms_is_the_sum_of_their_parses(
    terms: list[tuple[str, Decimal]],
) -> None:
    text = "".join(t for t, _ in terms)
    assert durations.parse(text) == sum((durations.parse(t) for t, _ in terms), timedelta(0))


@reproducible
@given(st.lists(go_terms(), min_size=1, max_size=6), st.booleans())
@example([("1.5h", Decimal(5400)), (".5s", Decimal("0.5"))], False)
@example([("1500ms", Decimal("1.5")), ("500000us", Decimal("0.5"))], True)
def test_parse_of_concatenated_terms_is_their_exact_sum_truncated_to_seconds(
    terms: list[tuple[str, Decimal]], plus: bool
) -> None:
    text = ("+" if plus else "") + "".join(t for t, _ in terms)
    exact = sum((value for _, value in terms), Decimal(0))
    assert durations.parse(text) == timedelta(seconds=int(exact))


# Characters that Go durations are made of, and their near misses.
DURATION_ALPHABET = string.digits + ".+-hmsnuµμ" + "dwyHMSe ,:_\t\n" + "ABCxyz/"


@reproducible
@given(st.text(DURATION_ALPHABET, max_size=12) | st.text(max_size=12))
@example("90d")
@example("1h 30m")
@example("5")
@example("")
@example(".h")
@example("h")
@example("++1h")
@example("1e3s")
def test_parse_rejects_everything_that_is_not_a_go_duration(text: str) -> None:
    assume(GO_DURATION.fullmatch(text) is None)
    assume(not any(unicodedata.category(c) == "Nd" and not c.isascii() for c in text))
    with pytest.raises(ValueError) as raised:
        durations.parse(text)
    message = str(raised.value)
    assert message in (
        "expected a duration such as 2160h or 1h30m",
        f"{text!r} is not a duration; expected e.g. 2160h, 1h30m or 90m",
        f"{text!r} is negative; expected a positive duration such as 2160h",
    )


@pytest.mark.parametrize(
    "text",
    ["\u0663h", "\uff11h", "\u0967\u0966m", "1\u0660s"],
    ids=["Arabic-Indic 3h", "fullwidth 1h", "Devanagari 10m", "1 and an Arabic-Indic 0 s"],
)
def test_parse_rejects_digits_that_are_not_ascii(text: str) -> None:
    with pytest.raises(ValueError, match="is not a duration"):
        durations.parse(text)


@reproducible
@given(whole_seconds.filter(bool), st.booleans())
def test_parse_rejects_negative_durations(value: timedelta, plus: bool) -> None:
    text = ("+" if plus else "") + "-" + durations.format(value)
    with pytest.raises(ValueError) as raised:
        durations.parse(text)
    assert str(raised.value) == f"{text!r} is negative; expected a positive duration such as 2160h"


@reproducible
@given(st.integers(min_value=10**12, max_value=10**40))
@example(10**12)
def test_parse_reports_huge_durations_as_value_errors(hours: int) -> None:
    # Far beyond Go's limit (2562047h) and timedelta's: a ValueError, never an OverflowError,
    # because validation turns only ValueErrors into located problems.
    with pytest.raises(ValueError):
        durations.parse(f"{hours}h")


# --- renewal time ----------------------------------------------------------------------------

SHORT_LIVED = timedelta(days=10)

instants = st.datetimes(
    min_value=datetime(2000, 1, 1), max_value=datetime(2100, 1, 1), timezones=st.just(UTC)
).map(lambda d: d.replace(microsecond=0))
lifetimes = st.one_of(
    st.integers(min_value=1, max_value=20 * 365 * 86400),
    st.integers(min_value=9 * 86400, max_value=11 * 86400),  # around the 10-day threshold
    st.sampled_from([1, 2, 3, 3600, 10 * 86400 - 1, 10 * 86400, 10 * 86400 + 1]),
).map(lambda s: timedelta(seconds=s))
some_renew_before = st.integers(min_value=1, max_value=20 * 365 * 86400).map(
    lambda s: timedelta(seconds=s)
)
renew_befores = st.one_of(st.none(), some_renew_before)
percentages = st.one_of(st.none(), st.integers(min_value=1, max_value=99))


@reproducible
@given(instants, lifetimes, renew_befores, percentages)
def test_renewal_time_is_whole_seconds_within_validity(
    not_before: datetime, lifetime: timedelta, renew_before: timedelta | None, pct: int | None
) -> None:
    not_after = not_before + lifetime
    due = pki.renewal_time(not_before, not_after, renew_before, pct)
    assert due.microsecond == 0
    assert due.tzinfo == UTC
    assert not_before <= due <= not_after


@reproducible
@given(instants, lifetimes, renew_befores.filter(lambda r: r is not None), percentages)
def test_renew_before_is_honoured_when_shorter_than_the_lifetime(
    not_before: datetime, lifetime: timedelta, renew_before: timedelta, pct: int | None
) -> None:
    assume(renew_before < lifetime)
    not_after = not_before + lifetime
    assert pki.renew_before(lifetime, renew_before, pct) == renew_before
    assert pki.renewal_time(not_before, not_after, renew_before, pct) == not_after - renew_before


@reproducible
@given(instants, lifetimes, st.integers(min_value=1, max_value=99))
def test_renew_before_percentage_renews_that_far_into_the_lifetime(
    not_before: datetime, lifetime: timedelta, pct: int
) -> None:
    due = pki.renewal_time(not_before, not_before + lifetime, None, pct)
    # lifetime * pct / 100 in microseconds is exact, as lifetimes are whole seconds.
    exact = not_before + timedelta(microseconds=lifetime // timedelta(microseconds=1) * pct // 100)
    assert timedelta(0) <= exact - due < timedelta(seconds=1)


@reproducible
@given(instants, lifetimes, st.one_of(st.none(), st.integers(min_value=1, max_value=99)))
def test_a_renew_before_no_shorter_than_the_lifetime_is_ignored(
    not_before: datetime, lifetime: timedelta, pct: int | None
) -> None:
    for too_long in (lifetime, lifetime + timedelta(seconds=1), lifetime * 2):
        assert pki.renew_before(lifetime, too_long, pct) == pki.renew_before(lifetime, None, pct)


@reproducible
@given(instants, lifetimes)
def test_default_renews_after_two_thirds_or_half_for_ten_days_or_less(
    not_before: datetime, lifetime: timedelta
) -> None:
    seconds = int(lifetime.total_seconds())
    share = seconds // 2 if lifetime <= SHORT_LIVED else 2 * seconds // 3
    due = pki.renewal_time(not_before, not_before + lifetime)
    assert due == not_before + timedelta(seconds=share)


@pytest.mark.parametrize(
    ("lifetime", "after"),
    [
        (timedelta(days=90), timedelta(days=60)),
        (timedelta(days=10, seconds=3), timedelta(days=6, hours=16, seconds=2)),
        (timedelta(days=10), timedelta(days=5)),
        (timedelta(hours=1), timedelta(minutes=30)),
        (timedelta(seconds=1), timedelta(0)),
    ],
    ids=["90 days: after 60", "just over 10 days: 2/3", "10 days: half", "1h: half", "1s: at once"],
)
def test_default_renewal_examples(lifetime: timedelta, after: timedelta) -> None:
    not_before = datetime(2026, 6, 1, 12, tzinfo=UTC)
    assert pki.renewal_time(not_before, not_before + lifetime) == not_before + after


@reproducible
@given(instants, lifetimes, lifetimes, percentages)
def test_renewal_time_never_moves_back_when_not_after_moves_forward(
    not_before: datetime, first: timedelta, second: timedelta, pct: int | None
) -> None:
    shorter, longer = sorted((first, second))
    early = pki.renewal_time(not_before, not_before + shorter, None, pct)
    late = pki.renewal_time(not_before, not_before + longer, None, pct)
    assert early <= late


@reproducible
@given(instants, lifetimes, lifetimes, some_renew_before)
def test_renewal_time_with_renew_before_is_monotonic_while_renew_before_applies(
    not_before: datetime, first: timedelta, second: timedelta, renew_before: timedelta
) -> None:
    shorter, longer = sorted((first, second))
    assume(renew_before < shorter)
    early = pki.renewal_time(not_before, not_before + shorter, renew_before)
    late = pki.renewal_time(not_before, not_before + longer, renew_before)
    assert late - early == longer - shorter


# --- backoff ---------------------------------------------------------------------------------


@reproducible
@given(st.integers(min_value=1, max_value=10**9))
@example(1)
@example(5)
@example(6)
@example(7)
@example(17)
@example(18)
def test_backoff_starts_at_one_hour_doubles_and_stops_at_32_hours(attempts: int) -> None:
    expected = timedelta(hours=2 ** (attempts - 1)) if attempts <= 6 else timedelta(hours=32)
    assert policies.backoff_delay(attempts) == expected


@reproducible
@given(st.integers(min_value=-(10**9), max_value=0))
def test_no_failures_means_no_backoff(attempts: int) -> None:
    assert policies.backoff_delay(attempts) == timedelta(0)


@reproducible
@given(st.integers(min_value=-5, max_value=10**9), st.integers(min_value=0, max_value=10**9))
def test_backoff_never_decreases(attempts: int, more: int) -> None:
    assert policies.backoff_delay(attempts) <= policies.backoff_delay(attempts + more)


# --- names -----------------------------------------------------------------------------------

# Letters whose upper and lower case map one to one (unlike ß, whose upper case is SS).
LABEL_ALPHABET = string.ascii_letters + string.digits + "-" + "äöüéñçøåÄÖÜÉÑÇØÅ"
labels = st.text(LABEL_ALPHABET, min_size=1, max_size=20)
dns_like = st.builds(
    lambda wildcard, parts: ("*." if wildcard else "") + ".".join(parts),
    st.booleans(),
    st.lists(labels, min_size=1, max_size=5),
)


def normalised_or_none(name: str) -> str | None:
    try:
        return names.dns_name(name)
    except ValueError:
        return None


@reproducible
@given(dns_like | st.text(max_size=30))
@example("a. .")
@example("example.test.\t.")
def test_dns_name_is_idempotent(name: str) -> None:
    once = normalised_or_none(name)
    assume(once is not None)
    assert names.dns_name(once) == once


@reproducible
@given(dns_like)
def test_dns_name_ignores_case(name: str) -> None:
    expected = normalised_or_none(name.lower())
    assume(expected is not None)
    assert normalised_or_none(name) == expected
    assert normalised_or_none(name.upper()) == expected
    assert normalised_or_none(name.swapcase()) == expected


@reproducible
@given(dns_like)
def test_dns_name_ignores_a_trailing_dot(name: str) -> None:
    expected = normalised_or_none(name)
    assume(expected is not None)
    assert names.dns_name(name + ".") == expected


@reproducible
@given(dns_like)
def test_dns_name_is_ascii_lower_case_without_trailing_dot(name: str) -> None:
    result = normalised_or_none(name)
    assume(result is not None)
    assert result.isascii()
    assert result == result.lower()
    assert not result.endswith(".")


@reproducible
@given(dns_like)
@example("bücher.example.test")
def test_dns_name_is_the_same_for_composed_and_decomposed_unicode(name: str) -> None:
    composed = unicodedata.normalize("NFC", name)
    decomposed = unicodedata.normalize("NFD", name)
    expected = normalised_or_none(composed)
    assume(expected is not None)
    assert normalised_or_none(decomposed) == expected


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("bücher.example.test", "xn--bcher-kva.example.test"),
        ("BÜCHER.Example.Test.", "xn--bcher-kva.example.test"),
        ("xn--bcher-kva.example.test", "xn--bcher-kva.example.test"),
        ("*.Example.TEST.", "*.example.test"),
        (" a.example.test ", "a.example.test"),
    ],
)
def test_dns_name_examples(name: str, expected: str) -> None:
    assert names.dns_name(name) == expected


@reproducible
@given(st.ip_addresses())
@example(ipaddress.IPv6Address("::1"))
def test_ip_address_spellings_normalise_to_one(
    address: ipaddress.IPv4Address | ipaddress.IPv6Address,
) -> None:
    spellings = {str(address), address.exploded, address.exploded.upper(), f" {address} "}
    assert {names.ip_address(s) for s in spellings} == {str(address)}


def test_ip_address_with_leading_zeros_is_the_short_form() -> None:
    assert names.ip_address("::0001") == names.ip_address("::1") == "::1"


# --- splitting manifests -----------------------------------------------------------------------

YAML_FRAGMENTS = [
    "---",
    "--- # c",
    "...",
    "%YAML 1.1",
    "a:",
    "a: 1",
    "- x",
    "  b: [1, 2",
    "{",
    "}",
    "? [a]",
    ": b",
    "&x",
    "*x",
    "!!int",
    "!!float",
    "!!binary",
    "!!timestamp",
    "!!python/object:os.system",
    "2026-13-01",
    "2026-02-30",
    "2026-01-01T25:00:00",
    "0000-00-00",
    "'",
    '"',
    "|",
    ">",
    "#",
    "\t",
    "\x0b",
    "\x85",
    "\u2028",
    "\ufeff",
    "é",
]
yaml_like = st.lists(
    st.one_of(st.sampled_from(YAML_FRAGMENTS), st.text(max_size=5)), max_size=30
).map(lambda parts: "".join(p + (" " if i % 3 else "\n") for i, p in enumerate(parts)).encode())


def check_split(data: bytes) -> None:
    documents, problems = split_documents("manifests/x.yaml", data)
    # However the file counts lines (\n, or also \r, \x85, \u2028... as YAML does).
    text = data.decode("utf-8", errors="replace")
    lines = max(data.count(b"\n"), len(text.splitlines())) + 1
    for document in documents:
        assert isinstance(document, Document)
        assert document.path == "manifests/x.yaml"
    for problem in problems:
        assert isinstance(problem, Problem)
        assert problem.path == "manifests/x.yaml"
        assert problem.line is not None and 1 <= problem.line <= lines


@reproducible
@given(st.binary(max_size=200))
def test_split_documents_never_raises_on_arbitrary_bytes(data: bytes) -> None:
    check_split(data)


@reproducible
@given(yaml_like)
@example(b"a: 2026-13-01\n")
@example(b"a: !!int x\n")
@example(b"a: !!float x\n")
@example(b"a: !!timestamp 2026-01-01T25:00:00\n")
@example(b"!!timestamp\n")
@example(b"!!float\n")
@example(b"!!int\n")
def test_split_documents_never_raises_on_yaml_like_text(data: bytes) -> None:
    check_split(data)


@reproducible
@given(st.text(max_size=100), st.sampled_from([b"\xff", b"\xe9", b"\xc3(", b"\x80"]), st.binary())
def test_non_utf8_is_reported_at_the_line_of_the_first_bad_byte(
    before: str, bad: bytes, after: bytes
) -> None:
    data = before.encode() + bad + after
    documents, problems = split_documents("m.yaml", data)
    line = before.encode().count(b"\n") + 1
    message = f"not UTF-8 (byte 0x{bad[:1].hex()}); save the file as UTF-8"
    assert (documents, problems) == ([], [Problem("m.yaml", line, None, message)])
