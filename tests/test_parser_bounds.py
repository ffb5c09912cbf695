"""No bad value sinks a run: every parser meets over-long digit strings, deep nesting and huge integers
in each numeric place with its documented rule or its typed error, never another exception (issue 13).

Rules shown here: a date part out of range (month 13 or a month of 5,000 digits) leaves that part unknown
and keeps the text in ``raw``; a PMID Version outside 1..999 rejects its record (RejectedRecord, the
others parse); a PMCID of more than 10 digits is no PMCID; a count past 32 bits is unknown; JSON nested
past 64 levels is a ParseError (of the work only, inside a Crossref list).
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
from hypothesis import example, given, settings, strategies as st

from enrich.crossref_json import parse_crossref_response, parse_crossref_work
from enrich.pmc_jats import parse_pmc_articles
from harvester.core.bounds import bounded_int, load_json
from harvester.core.errors import HarvestError, InvalidIdentifierError, ParseError
from harvester.core.ids import normalize_pmcid
from harvester.core.records import Article, DeletedCitation, RejectedRecord
from harvester.sources.eutils import parse_esearch
from harvester.sources.idconv import parse_idconv
from harvester.sources.pubmed_xml import parse_pubmed, scan_pubmed
from tests.db_helpers import crossref_message

FIXTURES = Path(__file__).parent / "fixtures"
FIVE = (FIXTURES / "bulk_five_records.xml").read_text(encoding="utf-8")
PMC = (FIXTURES / "efetch_pmc_PMC8958025.xml").read_text(encoding="utf-8")
ESEARCH = (FIXTURES / "esearch_usehistory.xml").read_text(encoding="utf-8")
IDCONV = (FIXTURES / "idconv_pmcid_PMC8958025.json").read_text(encoding="utf-8")

HUGE = "9" * 5000  # past Python's 4,300-digit limit for int()
BIG = str(2**63)  # parses as an int, overflows a 64-bit column
DIGITS = [HUGE, BIG, "0", "13", "00000000000000000000001", "1" * 400]


def first_record(text: str = FIVE) -> str:
    """The first PubmedArticle of the five-record file, in a set of its own."""
    start = text.index("<PubmedArticle>")
    end = text.index("</PubmedArticle>") + len("</PubmedArticle>")
    return "<PubmedArticleSet>" + text[start:end] + "</PubmedArticleSet>"


def in_pubdate(part: str, value: str) -> str:
    record = first_record()
    pubdate = re.search(r"<PubDate>.*?</PubDate>", record, re.DOTALL)
    assert pubdate is not None
    # A function as the replacement: the value is taken as it is (a template would read "\\1" or "\\A").
    new = re.sub(rf"<{part}>[^<]*</{part}>", lambda _m: f"<{part}>{value}</{part}>", pubdate.group(0))
    return record[: pubdate.start()] + new + record[pubdate.end() :]


def pubmed_outcome(xml: str) -> list[Article | DeletedCitation | RejectedRecord]:
    """Everything both PubMed entry points give; any exception but ParseError fails the test."""
    parsed = list(parse_pubmed(xml.encode(), keep_raw=True))
    scanned: list[Article | DeletedCitation | RejectedRecord] = []
    for record in scan_pubmed(xml.encode()):
        if isinstance(record, DeletedCitation | RejectedRecord):
            scanned.append(record)
            continue
        try:
            article = record.parse()
        except ParseError as exc:
            scanned.append(RejectedRecord(record.pmid, exc.message, record.raw_xml))
            continue
        if article is not None:
            scanned.append(article)
    assert [type(r) for r in parsed] == [type(r) for r in scanned]
    return parsed


# ---- the shared helpers --------------------------------------------------------------------------------


@given(st.text())
def test_bounded_int_never_raises_and_stays_in_range(text: str) -> None:
    value = bounded_int(text, 1, 999)
    assert value is None or 1 <= value <= 999


def test_bounded_int_reads_leading_zeros_and_refuses_long_digit_strings() -> None:
    assert bounded_int(" 007 ", 1, 12) == 7
    assert bounded_int("0" * 5000 + "7", 1, 12) == 7
    assert bounded_int(HUGE, 0, 10**12) is None
    assert bounded_int("²", 0, 9) is None  # str.isdigit() says yes, int() says no


@pytest.mark.parametrize("depth", [65, 1000, 100_000])
def test_load_json_refuses_deep_nesting_with_a_parse_error(depth: int) -> None:
    with pytest.raises(ParseError, match="nested deeper than 64 levels"):
        load_json("[" * depth + "]" * depth, source="test")


def test_load_json_keeps_huge_integers_as_text() -> None:
    data = load_json('{"a": ' + HUGE + ', "b": 12}', source="test")
    assert data == {"a": HUGE, "b": 12}


# ---- PubMed XML ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("value", DIGITS)
@pytest.mark.parametrize("part", ["Year", "Month", "Day"])
def test_pubmed_date_parts_of_any_length_leave_the_part_unknown(part: str, value: str) -> None:
    (article,) = pubmed_outcome(in_pubdate(part, value))
    assert isinstance(article, Article)
    date = article.pub_date
    assert date.raw is not None and value.lstrip("0")[:50] in date.raw
    number = value.lstrip("0")
    valid = {"Month": range(1, 13), "Day": range(1, 32)}.get(part, range(0))
    fits = len(number) <= 2 and int(number or "0") in valid  # the fixture's date is 2025 Jan 10
    if part == "Month":
        assert (date.year, date.month, date.day) == ((2025, int(number), 10) if fits else (2025, None, None))
    elif part == "Day":
        assert (date.year, date.month, date.day) == ((2025, 1, int(number)) if fits else (2025, 1, None))
    else:
        assert date.year is None


@pytest.mark.parametrize("value", [HUGE, BIG])
def test_pubmed_medline_date_day_of_any_length_is_dropped(value: str) -> None:
    record = re.sub(
        r"<PubDate>.*?</PubDate>",
        f"<PubDate><MedlineDate>2020 Jan {value}</MedlineDate></PubDate>",
        first_record(),
        flags=re.DOTALL,
    )
    (article,) = pubmed_outcome(record)
    assert isinstance(article, Article)
    assert (article.pub_date.year, article.pub_date.month, article.pub_date.day) == (2020, 1, None)


@pytest.mark.parametrize("version", [HUGE, BIG, "0", "1000", "-1", "v2"])
def test_a_pmid_version_out_of_range_rejects_its_record_and_only_it(version: str) -> None:
    records = FIVE.replace('<PMID Version="1">39000011</PMID>', f'<PMID Version="{version}">39000011</PMID>')
    outcome = pubmed_outcome(records)
    assert [type(r).__name__ for r in outcome] == [
        "Article",
        "RejectedRecord",
        "Article",
        "Article",
        "Article",
    ]
    rejected = outcome[1]
    assert isinstance(rejected, RejectedRecord)
    assert rejected.pmid == "39000011"
    assert "is not a whole number from 1 to 999" in rejected.reason
    assert len(rejected.reason) < 200  # a 5,000-digit value is shown shortened
    assert rejected.raw_xml.startswith(b"<PubmedArticle>") and b"39000011" in rejected.raw_xml


def test_pmid_versions_in_range_parse() -> None:
    records = FIVE.replace('<PMID Version="1">39000011</PMID>', '<PMID Version="999">39000011</PMID>')
    assert [a.pmid_version for a in pubmed_outcome(records) if isinstance(a, Article)] == [1, 999, 1, 1, 1]


@pytest.mark.parametrize("version", [HUGE, BIG, "0"])
def test_a_delete_citation_with_a_bad_version_is_rejected_not_fatal(version: str) -> None:
    xml = (
        "<PubmedArticleSet><DeleteCitation>"
        f'<PMID Version="{version}">1</PMID><PMID Version="2">3</PMID>'
        "</DeleteCitation></PubmedArticleSet>"
    )
    outcome = pubmed_outcome(xml)
    assert isinstance(outcome[0], RejectedRecord) and outcome[0].pmid == "1"
    assert outcome[1] == DeletedCitation("3", 2)


@pytest.mark.parametrize("value", [HUGE, "PMC" + HUGE, "PMC" + "1" * 11])
def test_a_pmcid_of_more_than_ten_digits_is_no_pmcid(value: str) -> None:
    record = first_record().replace(
        '<ArticleId IdType="pubmed">39000010</ArticleId>',
        f'<ArticleId IdType="pubmed">39000010</ArticleId><ArticleId IdType="pmc">{value}</ArticleId>',
    )
    (article,) = pubmed_outcome(record)
    assert isinstance(article, Article) and article.pmcid is None
    with pytest.raises(InvalidIdentifierError, match="at most 10 digits"):
        normalize_pmcid(value)
    assert normalize_pmcid("PMC" + "1" * 10) == "PMC" + "1" * 10


@pytest.mark.parametrize("value", [HUGE, BIG])
def test_a_pmid_of_any_length_is_no_pmid(value: str) -> None:
    record = first_record().replace('<PMID Version="1">39000010</PMID>', f'<PMID Version="1">{value}</PMID>')
    assert pubmed_outcome(record) == []  # a record without a usable PMID is skipped, as before


def test_a_nested_set_is_named_as_what_is_wrong() -> None:
    xml = (
        "<PubmedArticleSet><PubmedArticleSet>"
        + first_record()[len("<PubmedArticleSet>") :]
        + "</PubmedArticleSet>"
    )
    with pytest.raises(ParseError) as caught:
        list(parse_pubmed(xml.encode()))
    assert str(caught.value) == (
        "not PubMed XML: a <PubmedArticleSet> is nested inside <PubmedArticleSet>; "
        "it must be the root element"
    )


def test_a_record_inside_another_element_is_named_as_what_is_wrong() -> None:
    xml = (
        "<PubmedArticleSet><Extra>" + first_record()[len("<PubmedArticleSet>") : -len("</PubmedArticleSet>")]
    )
    xml += "</Extra></PubmedArticleSet>"
    with pytest.raises(ParseError) as caught:
        list(parse_pubmed(xml.encode()))
    assert str(caught.value) == (
        "not PubMed XML: a <PubmedArticle> is inside <Extra> (under <PubmedArticleSet>); records belong "
        "directly under the root <PubmedArticleSet>"
    )


@settings(max_examples=60, deadline=None)
@example(place="Year", value="\\1")  # backslashes the test's own substitution once took for a template
@example(place="Day", value="\\A")
@given(
    place=st.sampled_from(["Year", "Month", "Day", "Version", "pmc"]),
    value=st.one_of(st.text(alphabet="0123456789", min_size=1, max_size=6000), st.text(max_size=50)),
)
def test_pubmed_any_value_in_a_numeric_place_gives_a_record_or_a_typed_error(place: str, value: str) -> None:
    escaped = value.replace("&", "&amp;").replace("<", "&lt;").replace('"', "&quot;")
    escaped = "".join(ch for ch in escaped if ch.isprintable() and not 0xD800 <= ord(ch) <= 0xDFFF)
    if place == "Version":
        xml = first_record().replace('Version="1"', f'Version="{escaped}"', 1)
    elif place == "pmc":
        xml = first_record().replace(
            '<ArticleId IdType="doi">',
            f'<ArticleId IdType="pmc">{escaped}</ArticleId><ArticleId IdType="doi">',
        )
    else:
        xml = in_pubdate(place, escaped)
    try:
        outcome = pubmed_outcome(xml)
    except ParseError:
        return
    assert all(isinstance(r, Article | RejectedRecord) for r in outcome)


# ---- PMC JATS ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("value", DIGITS)
@pytest.mark.parametrize("part", ["year", "month", "day"])
def test_pmc_date_parts_of_any_length_leave_the_part_unknown(part: str, value: str) -> None:
    xml = re.sub(rf"<{part}>[^<]*</{part}>", lambda _m: f"<{part}>{value}</{part}>", PMC, count=1)
    (front,) = list(parse_pmc_articles(xml.encode()))
    assert front.pmcid == "PMC8958025"


@pytest.mark.parametrize("value", [HUGE, "1" * 11])
def test_pmc_article_with_an_over_long_pmcid_is_skipped_as_without_one(value: str) -> None:
    xml = PMC.replace(
        '<article-id pub-id-type="pmc">8958025</article-id>',
        f'<article-id pub-id-type="pmc">{value}</article-id>',
    )
    assert list(parse_pmc_articles(xml.encode())) == []


def test_pmc_copyright_year_of_any_length_is_no_year() -> None:
    xml = PMC.replace("<copyright-year>2022</copyright-year>", f"<copyright-year>{HUGE}</copyright-year>")
    (front,) = list(parse_pmc_articles(xml.encode()))
    assert front.copyright_year is None


def test_pmc_nested_set_message_says_what_is_wrong() -> None:
    start = PMC.index("<article ")
    end = PMC.index("</article>") + len("</article>")
    xml = "<pmc-articleset><pmc-articleset>" + PMC[start:end] + "</pmc-articleset></pmc-articleset>"
    with pytest.raises(ParseError) as caught:
        list(parse_pmc_articles(xml.encode()))
    assert str(caught.value) == (
        "not PMC XML: an <article> inside a nested <pmc-articleset> (under the root <pmc-articleset>); "
        "articles belong directly under the root <pmc-articleset>"
    )


# ---- Crossref JSON -------------------------------------------------------------------------------------


def envelope(*works: dict[str, Any]) -> bytes:
    items = ",".join(json.dumps(w) for w in works)
    return ('{"status":"ok","message-type":"work-list","message":{"items":[' + items + "]}}").encode()


def raw_work(doi: str, **fields: str) -> str:
    """A work as JSON text, with fields given as raw JSON (a huge integer, deep nesting)."""
    text = json.dumps(crossref_message(doi))[:-1]
    return text + "".join(f', "{name}": {value}' for name, value in fields.items()) + "}"


@pytest.mark.parametrize(
    "name",
    ["volume", "issue", "page", "publisher", "is-referenced-by-count", "references-count"],
)
@pytest.mark.parametrize("value", [HUGE, "1" * 310, BIG, "-" + HUGE])
def test_crossref_huge_integers_anywhere_are_text_or_unknown(name: str, value: str) -> None:
    (work,) = parse_crossref_response(raw_work("10.5555/x", **{name: value}).encode())
    if name in ("volume", "issue", "page", "publisher"):
        field = {"volume": work.volume, "issue": work.issue, "page": work.pages, "publisher": work.publisher}
        assert field[name] == value
    else:
        counts = {
            "is-referenced-by-count": work.is_referenced_by_count,
            "references-count": work.references_count,
        }
        assert counts[name] is None


@pytest.mark.parametrize("value", [HUGE, BIG, "1" * 310])
def test_crossref_date_parts_of_any_length_are_no_date_part(value: str) -> None:
    issued = '{"date-parts": [[2020, ' + value + ", 1]]}"
    (work,) = parse_crossref_response(raw_work("10.5555/x", issued=issued).encode())
    assert work.issued is not None and (work.issued.year, work.issued.month) == (2020, None)
    year_only = '{"date-parts": [[' + value + "]]}"
    (work,) = parse_crossref_response(raw_work("10.5555/x", issued=year_only).encode())
    assert work.issued is None


@pytest.mark.parametrize("depth", [1000, 100_000])
def test_crossref_json_nested_past_the_reader_is_a_parse_error(depth: int) -> None:
    body = raw_work("10.5555/x", extra="[" * depth + "]" * depth).encode()
    with pytest.raises(ParseError, match="nested deeper"):
        parse_crossref_response(body)


def test_crossref_one_over_deep_work_leaves_the_list_not_the_others() -> None:
    deep = "[" * 200 + "]" * 200
    items = ",".join([raw_work("10.5555/a"), raw_work("10.5555/b", extra=deep), raw_work("10.5555/c")])
    body = ('{"status":"ok","message-type":"work-list","message":{"items":[' + items + "]}}").encode()
    assert [w.doi for w in parse_crossref_response(body)] == ["10.5555/a", "10.5555/c"]
    with pytest.raises(ParseError, match="nested deeper than 64 levels"):
        parse_crossref_work(json.loads(raw_work("10.5555/b", extra=deep)))


def test_crossref_funder_with_awards_and_no_name_is_kept() -> None:
    funders = [
        {"name": "Ministry of Education, Youth and Sports", "DOI": "10.13039/501100001823", "award": ["X"]},
        {"award": ["LM2015047"]},
        {"award": []},  # nothing at all: nothing to keep
    ]
    (work,) = parse_crossref_response(envelope(crossref_message("10.3389/fgene.2017.00147", funder=funders)))
    assert [(f.name, f.doi, f.awards) for f in work.funders] == [
        ("Ministry of Education, Youth and Sports", "10.13039/501100001823", ("X",)),
        (None, None, ("LM2015047",)),
    ]


# ---- ID Converter and esearch --------------------------------------------------------------------------


@pytest.mark.parametrize("value", [HUGE, BIG, "1" * 310])
def test_idconv_huge_numbers_are_no_ids(value: str) -> None:
    body = IDCONV.replace('"pmid": 35350566', f'"pmid": {value}')
    (record,) = parse_idconv(body.encode())
    assert record.pmid is None and record.pmcid == "PMC8958025"
    body = IDCONV.replace('"pmcid": "PMC8958025"', f'"pmcid": "PMC{value}"')
    (record,) = parse_idconv(body.encode())
    assert record.pmcid is None


def test_idconv_deep_nesting_is_a_parse_error() -> None:
    body = IDCONV.replace('"status": "ok"', '"status": "ok", "x": ' + "[" * 5000 + "]" * 5000)
    with pytest.raises(ParseError, match=r"idconv: .*nested deeper"):
        parse_idconv(body.encode())


@pytest.mark.parametrize("tag", ["Count", "RetMax", "RetStart"])
@pytest.mark.parametrize("value", [HUGE, "1" * 14])
def test_esearch_huge_counts_are_a_parse_error(tag: str, value: str) -> None:
    body = re.sub(rf"<{tag}>\d+</{tag}>", f"<{tag}>{value}</{tag}>", ESEARCH, count=1)
    with pytest.raises(ParseError, match=f"<{tag}> is missing or not a whole number"):
        parse_esearch(body.encode())


@settings(max_examples=40, deadline=None)
@given(
    value=st.one_of(
        st.integers(min_value=-(10**400), max_value=10**400).map(str),
        st.text(alphabet="0123456789", min_size=300, max_size=6000),
        st.integers(min_value=1, max_value=3000).map(lambda d: "[" * d + "]" * d),
    ),
    name=st.sampled_from(["volume", "is-referenced-by-count", "issued", "title", "funder", "page"]),
)
def test_crossref_and_idconv_any_huge_value_gives_works_or_a_typed_error(value: str, name: str) -> None:
    for parse, body in (
        (parse_crossref_response, raw_work("10.5555/x", **{name: value})),
        (parse_idconv, IDCONV.replace('"pmid": 35350566', f'"pmid": {value}')),
    ):
        try:
            parse(body.encode())
        except HarvestError:
            pass


# ---- headers and error bodies --------------------------------------------------------------------------


def test_error_bodies_and_rate_headers_of_any_size_are_read_without_an_exception() -> None:
    from enrich.crossref import advertised_rate
    from harvester.sources.http import describe_body, parse_retry_after

    assert describe_body(b"{" + b'"a":[' * 20000) != ""
    assert describe_body(b"[" * 60000) != ""
    assert parse_retry_after(HUGE) is None  # float("9" * 5000) is inf: no wait
    assert advertised_rate({"x-rate-limit-limit": "50", "x-rate-limit-interval": HUGE + "s"}) is None
    assert advertised_rate({"x-rate-limit-limit": HUGE, "x-rate-limit-interval": "1s"}) is None
    assert advertised_rate({"x-rate-limit-limit": "50", "x-rate-limit-interval": "1s"}) == 50.0
