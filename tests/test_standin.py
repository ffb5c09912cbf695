"""The stand-in NCBI server itself, driven over real HTTP with ``requests`` as the harvester drives it."""

from __future__ import annotations

import gzip
import json
import select
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from urllib.parse import unquote

import pytest
import requests
from lxml import etree

from tests.conftest import shared_fixture
from tests.standin import (
    CROSSREF_WORKS,
    EFETCH,
    ESEARCH,
    IDCONV,
    XML_TYPE,
    Delay,
    ErrorInBody,
    HtmlErrorPage,
    LoggedRequest,
    Reset,
    Short,
    StandIn,
    Status,
    Truncated,
    crossref_rate_limited,
    match_term,
    max_requests_in_any_window,
    parse_records,
    path_matches,
    rate_limited,
)

REPO = Path(__file__).resolve().parent.parent
PUBMED_HEAD = (
    b'<?xml version="1.0" ?>\n'
    b'<!DOCTYPE PubmedArticleSet PUBLIC "-//NLM//DTD PubMedArticle, 1st January 2025//EN"'
    b' "https://dtd.nlm.nih.gov/ncbi/pubmed/out/pubmed_250101.dtd">\n'
)
NCBI_429_BODY = b'{"error":"API rate limit exceeded","api-key":"127.0.0.1","count":"4","limit":"3"}'


def journal_article(
    pmid: str,
    *,
    doi: str,
    pmcid: str | None = None,
    title: str = "A title",
    revised: tuple[str, str, str] = ("2024", "03", "05"),
    published: tuple[str, str] = ("2022", "Mar"),
) -> str:
    """One PubmedArticle in efetch's shape, with a reference whose DOI and PMID are not the record's."""
    pmc = f'\n\t\t\t\t<ArticleId IdType="pmc">{pmcid}</ArticleId>' if pmcid else ""
    return f"""<PubmedArticle>
		<MedlineCitation Status="MEDLINE" Owner="NLM" IndexingMethod="Automated">
			<PMID Version="1">{pmid}</PMID>
			<DateRevised>
				<Year>{revised[0]}</Year>
				<Month>{revised[1]}</Month>
				<Day>{revised[2]}</Day>
			</DateRevised>
			<Article PubModel="Electronic-eCollection">
				<Journal>
					<ISSN IssnType="Print">2234-943X</ISSN>
					<JournalIssue CitedMedium="Print">
						<Volume>12</Volume>
						<PubDate>
							<Year>{published[0]}</Year>
							<Month>{published[1]}</Month>
						</PubDate>
					</JournalIssue>
					<Title>Frontiers in oncology</Title>
				</Journal>
				<ArticleTitle>{title}</ArticleTitle>
				<ELocationID EIdType="doi" ValidYN="Y">{doi}</ELocationID>
				<Language>eng</Language>
			</Article>
		</MedlineCitation>
		<PubmedData>
			<History>
				<PubMedPubDate PubStatus="entrez">
					<Year>2022</Year>
					<Month>3</Month>
					<Day>30</Day>
				</PubMedPubDate>
				<PubMedPubDate PubStatus="pubmed">
					<Year>2022</Year>
					<Month>3</Month>
					<Day>31</Day>
				</PubMedPubDate>
			</History>
			<PublicationStatus>epublish</PublicationStatus>
			<ArticleIdList>
				<ArticleId IdType="pubmed">{pmid}</ArticleId>
				<ArticleId IdType="doi">{doi}</ArticleId>{pmc}
			</ArticleIdList>
			<ReferenceList>
				<Reference>
					<Citation>Someone else. Some journal. 2001.</Citation>
					<ArticleIdList>
						<ArticleId IdType="doi">10.9999/reference.doi</ArticleId>
						<ArticleId IdType="pubmed">10000001</ArticleId>
					</ArticleIdList>
				</Reference>
			</ReferenceList>
		</PubmedData>
	</PubmedArticle>"""


BOOK = """<PubmedBookArticle>
		<BookDocument>
			<PMID Version="1">33333333</PMID>
			<ArticleIdList>
				<ArticleId IdType="bookaccession">NBK1116</ArticleId>
			</ArticleIdList>
			<Book>
				<Publisher><PublisherName>University of Washington, Seattle</PublisherName></Publisher>
				<BookTitle book="gene">GeneReviews</BookTitle>
				<PubDate><Year>1993</Year></PubDate>
			</Book>
			<ArticleTitle book="gene" part="retinoblastoma">Retinoblastoma</ArticleTitle>
		</BookDocument>
		<PubmedBookData>
			<History>
				<PubMedPubDate PubStatus="entrez">
					<Year>2010</Year><Month>3</Month><Day>20</Day>
				</PubMedPubDate>
			</History>
			<PublicationStatus>ppublish</PublicationStatus>
			<ArticleIdList>
				<ArticleId IdType="pubmed">33333333</ArticleId>
			</ArticleIdList>
		</PubmedBookData>
	</PubmedBookArticle>"""

ALPHA = journal_article("11111111", doi="10.1000/Alpha.1", pmcid="PMC1111111", title="Alpha")
BETA = journal_article("22222222", doi="10.1000/beta.2", title="Beta", revised=("2024", "06", "10"))


def efetch_document(*articles: str) -> bytes:
    return (
        PUBMED_HEAD.decode() + "<PubmedArticleSet>\n\t" + "\n\t".join(articles) + "\n</PubmedArticleSet>\n"
    ).encode()


@pytest.fixture
def standin() -> Iterator[StandIn]:
    with StandIn([efetch_document(ALPHA, BETA), efetch_document(BOOK)]) as server:
        yield server


def xml(response: requests.Response) -> etree._Element:
    parser = etree.XMLParser(resolve_entities=False, no_network=True, load_dtd=False)
    return etree.fromstring(response.content, parser=parser)


def fetched_pmids(response: requests.Response) -> list[str]:
    root = xml(response)
    assert root.tag == "PubmedArticleSet"
    return [
        pmid.text or ""
        for article in root
        for pmid in article.iterfind(
            "MedlineCitation/PMID" if article.tag == "PubmedArticle" else "BookDocument/PMID"
        )
    ]


def texts(root: etree._Element, path: str) -> list[str]:
    return [element.text or "" for element in root.iterfind(path)]


def efetch(server: StandIn, ids: str, **params: str) -> requests.Response:
    return requests.get(
        server.eutils_url + "efetch.fcgi", params={"db": "pubmed", "id": ids, **params}, timeout=5
    )


def esearch(server: StandIn, term: str, **params: str) -> requests.Response:
    return requests.get(
        server.eutils_url + "esearch.fcgi", params={"db": "pubmed", "term": term, **params}, timeout=5
    )


def idconv(server: StandIn, ids: str, **params: str) -> requests.Response:
    query = {"ids": ids, "format": "json", "tool": "t", "email": "e@example.org", **params}
    return requests.get(server.idconv_url, params=query, timeout=5)


# ---- start-up and addresses ---------------------------------------------------------------------------


def test_starts_on_a_free_port_and_names_its_urls() -> None:
    with StandIn([efetch_document(ALPHA)]) as server:
        assert server.base_url.startswith("http://127.0.0.1:") and server.base_url.endswith("/")
        assert not server.base_url.endswith(":0/")
        assert server.eutils_url == server.base_url + "entrez/eutils/"
        assert server.idconv_url == server.base_url + "idconv/api/v1/articles/"
        assert server.crossref_url == server.base_url + "crossref/"
        assert server.icite_url == server.base_url + "icite/"
        assert server.env() == {
            "HARVEST_EUTILS_URL": server.eutils_url,
            "HARVEST_IDCONV_URL": server.idconv_url,
            "HARVEST_CROSSREF_URL": server.crossref_url,
            "HARVEST_ICITE_URL": server.icite_url,
        }
        assert server.pmids == ["11111111"]
    with pytest.raises(RuntimeError):
        _ = server.base_url


def test_loads_folders_of_xml_and_gzip_and_bytes(tmp_path: Path) -> None:
    (tmp_path / "a.xml").write_bytes(efetch_document(ALPHA))
    (tmp_path / "b.xml.gz").write_bytes(gzip.compress(efetch_document(BETA)))
    (tmp_path / "notes.txt").write_text("not a record file")
    (tmp_path / "c_truncated.xml").write_bytes(efetch_document(BOOK)[:200])
    with StandIn([tmp_path, efetch_document(BOOK)]) as server:
        assert server.pmids == ["11111111", "22222222", "33333333"]
        assert len(server.skipped) == 1 and "c_truncated.xml" in server.skipped[0]


def test_malformed_record_file_named_explicitly_is_refused_with_its_name(tmp_path: Path) -> None:
    bad = tmp_path / "bad.xml"
    bad.write_bytes(b"<PubmedArticleSet><PubmedArticle>")
    with pytest.raises(ValueError, match=r"bad\.xml"):
        StandIn([bad])


def test_parser_reads_the_records_own_ids_not_those_of_its_references() -> None:
    [record], deleted = parse_records(efetch_document(ALPHA))
    assert deleted == []
    assert (record.pmid, record.doi, record.pmcid) == ("11111111", "10.1000/Alpha.1", "PMC1111111")
    assert "10.9999/reference.doi" not in record.ids_of("doi")
    assert record.dates["mdat"].isoformat() == "2024-03-05"
    assert record.dates["pdat"].isoformat() == "2022-03-01"
    assert record.dates["edat"].isoformat() == "2022-03-30"


# ---- efetch -------------------------------------------------------------------------------------------


def test_efetch_get_returns_known_records_in_request_order_and_omits_unknown(standin: StandIn) -> None:
    response = efetch(standin, "22222222,99999999,11111111,22222222")
    assert response.status_code == 200
    assert response.headers["Content-Type"] == "text/xml; charset=UTF-8"
    assert response.content.startswith(PUBMED_HEAD)
    assert fetched_pmids(response) == ["22222222", "11111111"]


def test_efetch_post_form_body_and_book_articles(standin: StandIn) -> None:
    response = requests.post(
        standin.eutils_url + "efetch.fcgi",
        data={"db": "pubmed", "id": "33333333,11111111", "retmode": "xml"},
        timeout=5,
    )
    assert response.status_code == 200
    assert fetched_pmids(response) == ["33333333", "11111111"]
    assert xml(response)[0].tag == "PubmedBookArticle"


def test_efetch_all_unknown_pmids_is_an_empty_set_like_ncbi(standin: StandIn) -> None:
    response = efetch(standin, "99999999,88888888")
    assert response.status_code == 200
    root = xml(response)
    assert root.tag == "PubmedArticleSet" and len(root) == 0


@pytest.mark.parametrize("ids", ["abc,-1,0", "", " , "])
def test_efetch_without_any_valid_id_is_400_with_error_envelope(standin: StandIn, ids: str) -> None:
    response = efetch(standin, ids)
    assert response.status_code == 400
    root = xml(response)
    assert root.tag == "eFetchResult"
    assert root.findtext("ERROR") == "ID list is empty! Possibly it has no correct IDs."


def test_esearch_db_pmc_is_not_modelled_yet_and_says_so(standin: StandIn) -> None:
    response = esearch(standin, "cancer", db="pmc")
    assert response.status_code == 501
    assert standin.errors and "db=pmc" in standin.errors[0]


# ---- esearch ------------------------------------------------------------------------------------------


def search_result(response: requests.Response) -> tuple[int, list[str], etree._Element]:
    assert response.status_code == 200
    root = xml(response)
    assert root.tag == "eSearchResult"
    return int(root.findtext("Count") or -1), texts(root, "IdList/Id"), root


def test_esearch_quoted_doi_aid_clause_is_case_insensitive_and_shaped_like_ncbi(standin: StandIn) -> None:
    response = esearch(standin, '"10.1000/ALPHA.1"[AID]')
    assert response.content.startswith(
        b'<?xml version="1.0" encoding="UTF-8" ?>\n<!DOCTYPE eSearchResult PUBLIC'
    )
    count, ids, root = search_result(response)
    assert (count, ids) == (1, ["11111111"])
    assert [child.tag for child in root] == [
        "Count",
        "RetMax",
        "RetStart",
        "IdList",
        "TranslationSet",
        "QueryTranslation",
    ]
    assert (root.findtext("RetMax"), root.findtext("RetStart")) == ("1", "0")
    assert root.findtext("QueryTranslation") == '"10.1000/ALPHA.1"[AID]'


def test_esearch_doi_field_and_references_do_not_match(standin: StandIn) -> None:
    assert search_result(esearch(standin, "10.1000/beta.2[doi]"))[:2] == (1, ["22222222"])
    count, ids, root = search_result(esearch(standin, '"10.9999/reference.doi"[doi]'))
    assert (count, ids) == (0, [])
    assert root.find("IdList") is not None and len(root.find("IdList")) == 0  # type: ignore[arg-type]
    assert root.findtext("WarningList/OutputMessage") == "No items found."


def test_esearch_or_of_doi_clauses_lists_matches_newest_first_and_names_the_missing(standin: StandIn) -> None:
    term = '"10.1000/alpha.1"[AID] OR "10.1000/missing"[AID] OR "10.1000/BETA.2"[doi]'
    count, ids, root = search_result(esearch(standin, term))
    assert (count, ids) == (2, ["22222222", "11111111"])
    assert texts(root, "WarningList/QuotedPhraseNotFound") == ['"10.1000/missing"[AID]']


def test_esearch_pmid_clauses_ranges_and_all(standin: StandIn) -> None:
    assert search_result(esearch(standin, "22222222[uid]"))[:2] == (1, ["22222222"])
    assert search_result(esearch(standin, "11111111[pmid] OR 33333333[pmid]"))[:2] == (
        2,
        ["33333333", "11111111"],
    )
    assert search_result(esearch(standin, "20000000:40000000[uid]"))[:2] == (2, ["33333333", "22222222"])
    assert search_result(esearch(standin, "all[sb]"))[0] == 3
    assert search_result(esearch(standin, "cancer[tiab]"))[0] == 3  # anything not modelled means everything


def test_esearch_retstart_retmax_and_rettype_count(standin: StandIn) -> None:
    count, ids, root = search_result(esearch(standin, "all[sb]", retstart="1", retmax="1"))
    assert (count, ids) == (3, ["22222222"])
    assert (root.findtext("RetMax"), root.findtext("RetStart")) == ("1", "1")
    counted = xml(esearch(standin, "all[sb]", rettype="count"))
    assert [c.tag for c in counted] == ["Count"] and counted.findtext("Count") == "3"


def test_esearch_retstart_beyond_9998_is_an_error_inside_a_200(standin: StandIn) -> None:
    response = esearch(standin, "all[sb]", retstart="9999")
    assert response.status_code == 200
    root = xml(response)
    assert root.tag == "eSearchResult" and root.find("Count") is None
    assert "'retstart' cannot be larger than 9998" in (root.findtext("ERROR") or "")
    _, _, near = search_result(esearch(standin, "all[sb]", retstart="9998"))
    assert near.findtext("ERROR") is None


def test_esearch_clamps_retstart_plus_retmax_to_9999_with_a_warning(standin: StandIn) -> None:
    count, ids, root = search_result(esearch(standin, "all[sb]", retmax="10000"))
    assert count == 3 and len(ids) == 3
    assert "Restrictions achieved. start and count adjusted to 0, 9999" in texts(
        root, "WarningList/OutputMessage"
    )


def test_esearch_empty_term_is_an_error_inside_a_200(standin: StandIn) -> None:
    response = esearch(standin, "")
    assert response.status_code == 200
    assert xml(response).findtext("ERROR") == "Empty term and query_key - nothing todo"


def test_esearch_date_limits_filter_on_the_records_dates(standin: StandIn) -> None:
    by_mdat = esearch(standin, "all[sb]", datetype="mdat", mindate="2024/06/01", maxdate="2024/06")
    # the book has no DateRevised, so the mdat limit cannot exclude it
    assert search_result(by_mdat)[1] == ["33333333", "22222222"]
    by_pdat = esearch(standin, "all[sb]", datetype="pdat", mindate="2020", maxdate="2023")
    assert search_result(by_pdat)[1] == ["22222222", "11111111"]
    in_term = esearch(standin, '10.1000/alpha.1[doi] AND ("2024/03/01"[mdat] : "2024/03/31"[mdat])')
    assert search_result(in_term)[1] == ["11111111"]
    outside = esearch(standin, "10.1000/alpha.1[doi] AND 2025:2026[mdat]")
    assert search_result(outside)[1] == []


def test_usehistory_then_efetch_by_webenv_pages_with_retstart_retmax(standin: StandIn) -> None:
    _, _, root = search_result(esearch(standin, "all[sb]", usehistory="y", retmax="0"))
    assert [c.tag for c in root][:5] == ["Count", "RetMax", "RetStart", "QueryKey", "WebEnv"]
    webenv, query_key = root.findtext("WebEnv") or "", root.findtext("QueryKey") or ""
    assert webenv.startswith("MCID_") and query_key == "1"
    pages = [
        fetched_pmids(
            requests.post(
                standin.eutils_url + "efetch.fcgi",
                data={
                    "db": "pubmed",
                    "WebEnv": webenv,
                    "query_key": query_key,
                    "retstart": start,
                    "retmax": "2",
                },
                timeout=5,
            )
        )
        for start in ("0", "2")
    ]
    assert pages == [["33333333", "22222222"], ["11111111"]]
    bad = efetch(standin, "", WebEnv=webenv, query_key="7")
    assert bad.status_code == 400 and xml(bad).findtext("ERROR") == "Unable to obtain query #7"


def test_epost_stores_ids_for_efetch(standin: StandIn) -> None:
    posted = requests.post(
        standin.eutils_url + "epost.fcgi", data={"db": "pubmed", "id": "11111111,22222222"}, timeout=5
    )
    root = xml(posted)
    assert root.tag == "ePostResult"
    response = efetch(
        standin, "", WebEnv=root.findtext("WebEnv") or "", query_key=root.findtext("QueryKey") or ""
    )
    assert fetched_pmids(response) == ["11111111", "22222222"]


def test_match_term_groups_left_to_right_and_not() -> None:
    records = {r.pmid: r for r in parse_records(efetch_document(ALPHA, BETA, BOOK))[0]}
    assert match_term("all[sb] NOT 22222222[uid]", records).pmids == {"11111111", "33333333"}
    grouped = match_term('(10.1000/alpha.1[doi] OR "10.1000/beta.2"[AID]) AND 22222222[uid]', records)
    assert grouped.pmids == {"22222222"}
    assert grouped.translation == '(10.1000/alpha.1[doi] OR "10.1000/beta.2"[AID]) AND 22222222[uid]'
    assert match_term("10.1000/BETA.2", records).pmids == {"22222222"}  # an untagged DOI
    paren_doi = match_term("10.1016/s0140-6736(20)30183-5[doi]", records)
    assert paren_doi.pmids == frozenset() and paren_doi.translation == "10.1016/s0140-6736(20)30183-5[doi]"


# ---- ID Converter -------------------------------------------------------------------------------------


def test_idconv_by_pmid_pmcid_and_doi(standin: StandIn) -> None:
    by_pmid = idconv(standin, "11111111", idtype="pmid", versions="no")
    assert by_pmid.status_code == 200
    assert by_pmid.headers["Content-Type"].startswith("application/json")
    payload = by_pmid.json()
    assert payload["status"] == "ok" and payload["responseDate"]
    assert "ids=11111111" in payload["request"] and "email=e%40example.org" in payload["request"]
    expected = {
        "pmcid": "PMC1111111",
        "pmid": "11111111",
        "doi": "10.1000/Alpha.1",
        "requested-id": "11111111",
    }
    assert payload["records"] == [expected]
    for ids, idtype in (
        ("PMC1111111", ""),
        ("1111111", "pmcid"),
        ("PMC1111111.1", "pmcid"),
        ("10.1000/ALPHA.1", "doi"),
    ):
        [record] = idconv(standin, ids, idtype=idtype, versions="no").json()["records"]
        assert {k: record[k] for k in ("pmcid", "pmid", "doi")} == {
            k: expected[k] for k in ("pmcid", "pmid", "doi")
        }
        assert record["requested-id"] == ids
    with_versions = idconv(standin, "11111111").json()["records"][0]
    assert with_versions["versions"] == [{"pmcid": "PMC1111111.1", "current": "true"}]


def test_idconv_per_record_errors_inside_an_ok_answer(standin: StandIn) -> None:
    payload = idconv(standin, "11111111,22222222,77777777", idtype="pmid", versions="no").json()
    assert payload["status"] == "ok"
    ok, not_in_pmc, unknown = payload["records"]
    assert ok["pmcid"] == "PMC1111111"
    assert not_in_pmc == {
        "pmid": "22222222",
        "requested-id": "22222222",
        "status": "error",
        "errmsg": "Identifier not found in PMC",
    }
    assert unknown["status"] == "error" and unknown["errmsg"] == "invalid article id"
    by_doi = idconv(standin, "10.1000/beta.2", idtype="doi").json()["records"]
    assert by_doi[0]["status"] == "error" and "pmcid" not in by_doi[0]


def test_idconv_idtype_mismatch_is_a_whole_request_error_like_the_recorded_one(standin: StandIn) -> None:
    response = idconv(standin, "28371833", idtype="doi")
    assert response.status_code == 404
    payload = response.json()
    assert payload["status"] == "error" and "records" not in payload
    assert payload["message"] == "ID%20type%20%27doi%27%20mismatch%20for%20%2728371833%27"
    assert payload["request"].startswith("ids=28371833;")
    unknown = idconv(standin, "26uio")
    assert unknown.status_code == 400
    assert unquote(unknown.json()["message"]) == "ID type of '26uio' is unknown"
    mixed = idconv(standin, "11111111,PMC1111111")
    assert (
        mixed.status_code == 404
        and unquote(mixed.json()["message"]) == "ID type 'pmid' mismatch for 'PMC1111111'"
    )


def test_idconv_refuses_more_than_200_ids(standin: StandIn) -> None:
    assert idconv(standin, ",".join(str(n) for n in range(1, 201)), idtype="pmid").status_code == 200
    response = idconv(standin, ",".join(str(n) for n in range(1, 202)), idtype="pmid")
    assert response.status_code == 400 and response.json()["status"] == "error"


# ---- faults -------------------------------------------------------------------------------------------


def test_status_faults_are_consumed_in_order_then_the_real_answer(standin: StandIn) -> None:
    standin.inject(EFETCH, rate_limited(retry_after=2), Status(503, b"Service Unavailable"))
    assert standin.pending_faults == 2
    first = efetch(standin, "11111111")
    assert first.status_code == 429 and first.content == NCBI_429_BODY
    assert first.headers["Retry-After"] == "2" and first.headers["Content-Type"] == "application/json"
    second = efetch(standin, "11111111")
    assert (second.status_code, second.content) == (503, b"Service Unavailable")
    assert fetched_pmids(efetch(standin, "11111111")) == ["11111111"]
    assert standin.pending_faults == 0
    assert [type(r.fault).__name__ for r in standin.requests] == ["Status", "Status", "NoneType"]


def test_faults_only_hit_their_path_and_matching_params(standin: StandIn) -> None:
    standin.inject("efetch.fcgi", Status(500), match=lambda p: "22222222" in p.get("id", ""))
    assert esearch(standin, "all[sb]").status_code == 200
    assert efetch(standin, "11111111").status_code == 200
    assert efetch(standin, "22222222").status_code == 500
    assert efetch(standin, "22222222").status_code == 200


def test_fail_always_until_cleared(standin: StandIn) -> None:
    standin.fail_always(EFETCH, Status(502, b"Bad Gateway"), match=lambda p: "22222222" in p.get("id", ""))
    assert [efetch(standin, "22222222").status_code for _ in range(3)] == [502, 502, 502]
    assert efetch(standin, "11111111").status_code == 200
    standin.clear_faults()
    assert efetch(standin, "22222222").status_code == 200


def test_html_error_page_and_error_in_body_arrive_with_200(standin: StandIn) -> None:
    standin.inject(EFETCH, HtmlErrorPage(), ErrorInBody("Failed to connect to PubOne service"))
    standin.inject(ESEARCH, ErrorInBody("Search Backend failed"))
    page = efetch(standin, "11111111")
    assert page.status_code == 200 and page.headers["Content-Type"].startswith("text/html")
    assert b"<html" in page.content
    error = efetch(standin, "11111111")
    assert error.status_code == 200
    assert (
        xml(error).tag == "eFetchResult"
        and xml(error).findtext("ERROR") == "Failed to connect to PubOne service"
    )
    searched = xml(esearch(standin, "all[sb]"))
    assert searched.tag == "eSearchResult" and searched.findtext("ERROR") == "Search Backend failed"


def test_truncated_body_has_its_own_length_and_does_not_parse(standin: StandIn) -> None:
    whole = efetch(standin, "11111111,22222222").content
    standin.inject(EFETCH, Truncated(0.5))
    response = efetch(standin, "11111111,22222222")
    assert response.status_code == 200
    assert response.content == whole[: len(whole) // 2]
    assert response.headers["Content-Length"] == str(len(response.content))
    with pytest.raises(etree.XMLSyntaxError):
        xml(response)


def test_short_answer_drops_the_last_records(standin: StandIn) -> None:
    standin.inject(EFETCH, Short())
    assert fetched_pmids(efetch(standin, "11111111,22222222,33333333")) == ["11111111", "22222222"]
    standin.inject(ESEARCH, Short(drop=2))
    count, ids, _ = search_result(esearch(standin, "all[sb]"))
    assert (count, ids) == (3, ["33333333"])
    standin.inject(IDCONV, Short())
    assert idconv(standin, "11111111,22222222", idtype="pmid").json()["records"][0]["pmid"] == "11111111"


def test_reset_raises_connection_error_on_the_client(standin: StandIn) -> None:
    standin.inject(EFETCH, Reset())
    with pytest.raises(requests.ConnectionError):
        efetch(standin, "11111111")
    assert standin.requests[-1].status is None and isinstance(standin.requests[-1].fault, Reset)
    assert efetch(standin, "11111111").status_code == 200


def test_delay_beyond_the_client_timeout_raises_timeout(standin: StandIn) -> None:
    standin.inject(EFETCH, Delay(0.3))
    with pytest.raises(requests.Timeout):
        requests.get(
            standin.eutils_url + "efetch.fcgi", params={"db": "pubmed", "id": "11111111"}, timeout=0.05
        )
    assert efetch(standin, "11111111").status_code == 200  # a fresh connection is served meanwhile
    standin.inject(EFETCH, Delay(0.05))
    assert fetched_pmids(efetch(standin, "11111111")) == ["11111111"]


def test_fault_on_the_id_converter_uses_its_json_envelope(standin: StandIn) -> None:
    standin.inject("idconv", ErrorInBody("Service is temporarily unavailable"))
    payload = idconv(standin, "11111111").json()
    assert (
        payload["status"] == "error" and unquote(payload["message"]) == "Service is temporarily unavailable"
    )


# ---- the request log and the rate ---------------------------------------------------------------------


def test_request_log_records_time_params_and_status(standin: StandIn) -> None:
    before_wall, before = time.time(), time.monotonic()
    efetch(standin, "11111111", tool="pubmed-harvester")
    requests.post(
        standin.eutils_url + "efetch.fcgi?tool=t", data={"db": "pubmed", "id": "1,22222222"}, timeout=5
    )
    idconv(standin, "11111111", idtype="pmid")
    log = standin.requests
    assert [(r.method, r.status) for r in log] == [("GET", 200), ("POST", 200), ("GET", 200)]
    assert before <= log[0].time <= log[1].time <= log[2].time <= time.monotonic()
    assert before_wall - 1 <= log[0].wall_time <= time.time() + 1
    assert log[0].path == "/entrez/eutils/efetch.fcgi" and log[0].params["tool"] == "pubmed-harvester"
    assert log[1].params == {"tool": "t", "db": "pubmed", "id": "1,22222222"}
    assert log[0].client == "127.0.0.1" and "User-Agent" in log[0].headers
    assert [r.path for r in standin.requests_for("efetch.fcgi")] == [log[0].path, log[1].path]
    assert standin.requests_for("idconv/api/v1/articles/") == [log[2]]
    assert standin.requests_for("idconv") == [log[2]]
    standin.clear_log()
    assert standin.requests == []


def test_log_is_a_copy_of_frozen_records(standin: StandIn) -> None:
    efetch(standin, "11111111")
    log = standin.requests
    log.clear()
    assert len(standin.requests) == 1
    with pytest.raises(AttributeError):
        standin.requests[0].status = 500  # type: ignore[misc]
    assert isinstance(standin.requests[0], LoggedRequest)


def test_concurrent_requests_are_all_answered_and_logged(standin: StandIn) -> None:
    with ThreadPoolExecutor(max_workers=8) as pool:
        codes = list(pool.map(lambda _: efetch(standin, "11111111").status_code, range(16)))
    assert codes == [200] * 16 and len(standin.requests) == 16


def test_max_requests_in_any_window() -> None:
    assert max_requests_in_any_window([]) == 0
    assert max_requests_in_any_window([5.0]) == 1
    paced = [i * 0.34 for i in range(12)]  # a little under three a second
    assert max_requests_in_any_window(paced) == 3
    assert max_requests_in_any_window([0.0, 0.34, 0.68, 1.0]) == 3  # [t, t+1) is half-open
    assert max_requests_in_any_window([0.0, 0.1, 0.2, 0.3, 2.0]) == 4
    assert max_requests_in_any_window([3.0, 0.0, 0.5, 0.9], window=0.5) == 2  # unsorted input


def test_ncbi_rate_headers_on_eutils_answers(standin: StandIn) -> None:
    response = efetch(standin, "11111111")
    assert response.headers["X-RateLimit-Limit"] == "3"
    assert int(response.headers["X-RateLimit-Remaining"]) in {0, 1, 2}


def test_enforce_rate_answers_429_with_ncbis_body_and_counts_violations() -> None:
    with StandIn([efetch_document(ALPHA)], enforce_rate=3) as server:
        with requests.Session() as session:
            url = server.eutils_url + "efetch.fcgi"
            responses = [
                session.get(url, params={"db": "pubmed", "id": "11111111"}, timeout=5) for _ in range(5)
            ]
        assert [r.status_code for r in responses] == [200, 200, 200, 429, 429]
        assert json.loads(responses[3].content) == {
            "error": "API rate limit exceeded",
            "api-key": "127.0.0.1",
            "count": "4",
            "limit": "3",
        }
        assert "Retry-After" not in responses[3].headers
        assert server.rate_violations == 2
        assert [r.rate_limited for r in server.requests] == [False, False, False, True, True]
        assert idconv(server, "11111111").status_code == 200  # the limit is the E-utilities'


# ---- records changing upstream ------------------------------------------------------------------------


def test_replace_add_and_remove_records_at_run_time(standin: StandIn) -> None:
    standin.replace_record(
        "11111111", journal_article("11111111", doi="10.1000/alpha.1", title="Alpha, corrected").encode()
    )
    assert b"Alpha, corrected" in efetch(standin, "11111111").content
    with pytest.raises(ValueError):
        standin.replace_record("11111111", efetch_document(BETA))
    with pytest.raises(KeyError):
        standin.replace_record("44444444", journal_article("44444444", doi="10.1/x").encode())
    assert standin.add_records(efetch_document(journal_article("44444444", doi="10.1000/delta.4"))) == [
        "44444444"
    ]
    assert search_result(esearch(standin, "10.1000/delta.4[doi]"))[1] == ["44444444"]
    standin.remove_record("22222222")
    assert fetched_pmids(efetch(standin, "22222222,44444444")) == ["44444444"]
    standin.add_records(
        b"<PubmedArticleSet><DeleteCitation><PMID Version='1'>44444444</PMID></DeleteCitation>"
        b"</PubmedArticleSet>"
    )
    assert standin.pmids == ["11111111", "33333333"]


def test_unknown_paths_and_unmodelled_services(standin: StandIn) -> None:
    assert requests.get(standin.base_url + "nothing/here", timeout=5).status_code == 404
    assert requests.get(standin.crossref_url + "members/311", timeout=5).status_code == 501
    assert (
        requests.get(standin.eutils_url + "esummary.fcgi", params={"id": "1"}, timeout=5).status_code == 501
    )
    assert len(standin.errors) == 2
    assert path_matches("/entrez/eutils/efetch.fcgi", "") and not path_matches(
        "/crossref/works", "efetch.fcgi"
    )


# ---- Crossref -----------------------------------------------------------------------------------------

WORK_A: dict[str, object] = {
    "DOI": "10.1000/Alpha.1",
    "type": "journal-article",
    "title": ["Alpha"],
    "author": [{"given": "Ann", "family": "Smith", "sequence": "first", "affiliation": []}],
    "issued": {"date-parts": [[2022, 3, 8]]},
}
WORK_B: dict[str, object] = {"DOI": "10.1000/beta.2", "type": "journal-article", "title": ["Beta"]}
CROSSREF_429_PAGE_START = b"<html><body><h1>429 Too Many Requests</h1>"


def work_envelope(work: dict[str, object]) -> bytes:
    return json.dumps(
        {"status": "ok", "message-type": "work", "message-version": "1.0.0", "message": work}
    ).encode()


@pytest.fixture
def crossref() -> Iterator[StandIn]:
    with StandIn(crossref_sources=[work_envelope(WORK_A), json.dumps(WORK_B).encode()]) as server:
        yield server


def works_list(server: StandIn, *dois: str, **params: str) -> requests.Response:
    query = {"filter": ",".join(f"doi:{d}" for d in dois), "rows": str(len(dois)), **params}
    return requests.get(server.crossref_url + "works", params=query, timeout=5)


def test_crossref_work_by_doi_raw_or_encoded_and_in_any_case(crossref: StandIn) -> None:
    for path in ("works/10.1000/alpha.1", "works/10.1000%2FALPHA.1", "works/10.1000/Alpha.1"):
        response = requests.get(crossref.crossref_url + path, params={"mailto": "dev@example.org"}, timeout=5)
        assert response.status_code == 200 and response.headers["Content-Type"] == "application/json"
        payload = response.json()
        assert {k: payload[k] for k in ("status", "message-type", "message-version")} == {
            "status": "ok",
            "message-type": "work",
            "message-version": "1.0.0",
        }
        assert payload["message"] == WORK_A
    assert crossref.crossref_dois == ["10.1000/alpha.1", "10.1000/beta.2"]


def test_crossref_unknown_doi_is_the_recorded_404_text(crossref: StandIn) -> None:
    response = requests.get(crossref.crossref_url + "works/10.1371/notarealdoi", timeout=5)
    assert response.status_code == 404
    assert response.content == b"Resource not found." and response.headers["Content-Type"] == "text/plain"
    assert crossref.errors == []


def test_crossref_recorded_404_body_matches_the_real_one(crossref: StandIn) -> None:
    recorded = shared_fixture("crossref/habanero-works-404-notarealdoi.txt").read_bytes()
    assert requests.get(crossref.crossref_url + "works/10.1371/notarealdoi", timeout=5).content == recorded


def test_crossref_field_query_on_a_work_is_the_recorded_400(crossref: StandIn) -> None:
    response = requests.get(
        crossref.crossref_url + "works/10.1000/alpha.1", params={"query.author": "smith"}, timeout=5
    )
    assert response.status_code == 400
    assert response.json() == {
        "status": "failed",
        "message-type": "validation-failure",
        "message": [
            {
                "type": "parameter-not-allowed",
                "value": "query.*",
                "message": "This route does not support field query parameters",
            }
        ],
    }


def test_crossref_rate_headers_and_pool_on_every_answer() -> None:
    with StandIn(crossref_sources=[work_envelope(WORK_A)], crossref_rate_limit=2) as server:
        url = server.crossref_url + "works/10.1000/alpha.1"
        public = requests.get(url, timeout=5)
        polite = requests.get(url, params={"mailto": "dev@example.org"}, timeout=5)
        by_agent = requests.get(url, headers={"User-Agent": "tool/1 (mailto:dev@example.org)"}, timeout=5)
        plus = requests.get(url, headers={"Crossref-Plus-API-Token": "Bearer t"}, timeout=5)
        missing = requests.get(server.crossref_url + "works/10.1/none", timeout=5)
        listed = works_list(server, "10.1000/alpha.1")
        for response in (public, polite, by_agent, plus, missing, listed):
            assert response.headers["x-rate-limit-limit"] == "2"
            assert response.headers["x-rate-limit-interval"] == "1s"
            assert response.headers["x-concurrency-limit"] == "1"
        pools = [r.headers["x-api-pool"] for r in (public, polite, by_agent, plus)]
        assert pools == ["public", "polite", "polite", "plus"]


def test_crossref_works_list_by_doi_filter(crossref: StandIn) -> None:
    response = works_list(crossref, "10.1000/BETA.2", "10.1000/alpha.1", "10.1000/unknown", "10.1000/beta.2")
    assert response.status_code == 200
    payload = response.json()
    assert (payload["status"], payload["message-type"], payload["message-version"]) == (
        "ok",
        "work-list",
        "1.0.0",
    )
    message = payload["message"]
    assert [item["DOI"] for item in message["items"]] == ["10.1000/beta.2", "10.1000/Alpha.1"]
    assert message["total-results"] == 2 and message["items-per-page"] == 4
    assert message["query"] == {"start-index": 0, "search-terms": None} and message["facets"] == {}
    paged = works_list(crossref, "10.1000/alpha.1", "10.1000/beta.2", rows="1", offset="1").json()["message"]
    assert [item["DOI"] for item in paged["items"]] == ["10.1000/beta.2"] and paged["total-results"] == 2
    everything = requests.get(crossref.crossref_url + "works", timeout=5).json()["message"]
    assert everything["total-results"] == 2 and everything["items-per-page"] == 20


@pytest.mark.parametrize(
    ("params", "kind"),
    [
        ({"filter": "nonsense:1"}, "filter-not-available"),
        ({"filter": "doi:10.1000/alpha.1,bogus"}, "filter-not-available"),
        ({"filter": "doi:10.1000/alpha.1", "rows": "1001"}, "integer-not-valid"),
        ({"filter": "doi:10.1000/alpha.1", "rows": "ten"}, "integer-not-valid"),
    ],
)
def test_crossref_bad_filter_or_rows_is_a_validation_failure(
    crossref: StandIn, params: dict[str, str], kind: str
) -> None:
    response = requests.get(crossref.crossref_url + "works", params=params, timeout=5)
    assert response.status_code == 400 and response.headers["Content-Type"].startswith("application/json")
    payload = response.json()
    assert payload["status"] == "failed" and payload["message-type"] == "validation-failure"
    assert payload["message"][0]["type"] == kind and payload["message"][0]["message"]


def test_crossref_real_filters_and_routes_not_modelled_say_so(crossref: StandIn) -> None:
    typed = requests.get(
        crossref.crossref_url + "works", params={"filter": "type:journal-article"}, timeout=5
    )
    queried = requests.get(crossref.crossref_url + "works", params={"query": "ecology"}, timeout=5)
    agency = requests.get(crossref.crossref_url + "works/10.1000/zzz/agency", timeout=5)
    assert [r.status_code for r in (typed, queried, agency)] == [501, 501, 501]
    assert len(crossref.errors) == 3 and "filter type" in crossref.errors[0]
    assert requests.post(crossref.crossref_url + "works", timeout=5).status_code == 405


def test_crossref_loading_from_objects_lists_folders_and_bad_input(tmp_path: Path) -> None:
    (tmp_path / "a.json").write_text(json.dumps(WORK_A))
    (tmp_path / "funders.json").write_text(json.dumps({"status": "ok", "message-type": "funder-list"}))
    (tmp_path / "broken.json").write_text("{not json")
    (tmp_path / "notes.txt").write_text("ignored")
    with StandIn(crossref_sources=tmp_path) as server:
        assert server.crossref_dois == ["10.1000/alpha.1"]
        assert len(server.skipped) == 2 and any("funder-list" in reason for reason in server.skipped)
        listing = {
            "status": "ok",
            "message-type": "work-list",
            "message": {"items": [WORK_B, {**WORK_A, "title": ["Alpha, corrected"]}]},
        }
        assert server.add_crossref_works(listing) == ["10.1000/beta.2", "10.1000/alpha.1"]
        assert server.crossref_work("10.1000/ALPHA.1")["title"] == ["Alpha, corrected"]
        with pytest.raises(ValueError, match="status 'failed'"):
            server.add_crossref_works(b'{"status":"failed","message-type":"validation-failure","message":[]}')
        with pytest.raises(ValueError, match="without a DOI"):
            server.add_crossref_works({"title": ["no DOI"]})
        server.remove_crossref_work("10.1000/Beta.2")
        assert requests.get(server.crossref_url + "works/10.1000/beta.2", timeout=5).status_code == 404


def test_crossref_loads_the_recorded_answers_and_serves_them_back() -> None:
    folder = shared_fixture("crossref/habanero-works-10.1371_journal.pone.0033693.json").parent
    with StandIn(crossref_sources=folder) as server:
        assert "10.1371/journal.pone.0033693" in server.crossref_dois
        assert "10.1371/journal.ppat.1006930" in server.crossref_dois  # from a work list
        assert len(server.crossref_dois) >= 100
        served = requests.get(server.crossref_url + "works/10.1371/journal.pone.0033693", timeout=5)
        recorded = json.loads(
            shared_fixture("crossref/habanero-works-10.1371_journal.pone.0033693.json").read_bytes()
        )
        assert served.json() == recorded


def test_crossref_faults_rate_limit_errors_and_short_lists(crossref: StandIn) -> None:
    crossref.inject(CROSSREF_WORKS, crossref_rate_limited(limit=1, retry_after=2))
    limited = requests.get(crossref.crossref_url + "works/10.1000/alpha.1", timeout=5)
    assert limited.status_code == 429 and limited.content.startswith(CROSSREF_429_PAGE_START)
    assert limited.headers["x-rate-limit-limit"] == "1" and limited.headers["x-rate-limit-interval"] == "1s"
    assert limited.headers["Retry-After"] == "2" and limited.headers["x-api-pool"] == "public"
    assert requests.get(crossref.crossref_url + "works/10.1000/alpha.1", timeout=5).status_code == 200

    crossref.inject("crossref/works", ErrorInBody("Response Exception", status=500))
    failed = works_list(crossref, "10.1000/alpha.1")
    assert failed.status_code == 500
    assert (failed.json()["status"], failed.json()["message-type"]) == ("error", "exception")
    assert failed.json()["message"]["message"] == "Response Exception"
    crossref.inject("crossref/works", ErrorInBody("no such thing", status=400))
    assert works_list(crossref, "10.1000/alpha.1").json()["status"] == "failed"

    crossref.inject(CROSSREF_WORKS, Short())
    short = works_list(crossref, "10.1000/alpha.1", "10.1000/beta.2").json()["message"]
    assert [item["DOI"] for item in short["items"]] == ["10.1000/Alpha.1"] and short["total-results"] == 2


def test_crossref_requests_are_logged_and_faults_match_their_params(crossref: StandIn) -> None:
    crossref.inject(CROSSREF_WORKS, Status(503), match=lambda p: "doi:10.1000/beta.2" in p.get("filter", ""))
    assert works_list(crossref, "10.1000/alpha.1").status_code == 200
    assert requests.get(crossref.crossref_url + "works/10.1000/beta.2", timeout=5).status_code == 200
    assert works_list(crossref, "10.1000/beta.2").status_code == 503
    log = crossref.requests_for(CROSSREF_WORKS)
    assert [r.path for r in log] == ["/crossref/works", "/crossref/works/10.1000/beta.2", "/crossref/works"]
    assert [r.status for r in log] == [200, 200, 503]
    assert log[0].params == {"filter": "doi:10.1000/alpha.1", "rows": "1"}
    assert crossref.requests_for("efetch.fcgi") == [] and crossref.pending_faults == 0


# ---- efetch db=pmc ------------------------------------------------------------------------------------

PMC_HEAD = (
    '<?xml version="1.0" ?>\n<!DOCTYPE pmc-articleset PUBLIC "-//NLM//DTD ARTICLE SET 2.0//EN"'
    ' "https://dtd.nlm.nih.gov/ncbi/pmc/articleset/nlm-articleset-2.0.dtd">\n'
)


def pmc_article(pmc_id: str, id_type: str, title: str) -> str:
    return (
        '<article xmlns:xlink="http://www.w3.org/1999/xlink" article-type="research-article"><front>'
        f'<article-meta><article-id pub-id-type="pmid">9{pmc_id[-3:]}</article-id>'
        f'<article-id pub-id-type="{id_type}">{pmc_id}</article-id>'
        f"<title-group><article-title>{title}</article-title></title-group></article-meta></front>"
        '<back><ref-list><ref><element-citation><pub-id pub-id-type="pmcid">PMC999</pub-id>'
        "</element-citation></ref></ref-list></back></article>"
    )


PMC_SET = (
    PMC_HEAD
    + "<pmc-articleset>"
    + pmc_article("1111111", "pmc", "One")
    + pmc_article("PMC2222222", "pmcid", "Two")
    + "</pmc-articleset>\n"
).encode()


def pmc_titles(response: requests.Response) -> list[str]:
    root = xml(response)
    assert root.tag == "pmc-articleset"
    return [article.findtext("front/article-meta/title-group/article-title") or "" for article in root]


def test_efetch_pmc_answers_the_known_articles_in_request_order() -> None:
    with StandIn([efetch_document(ALPHA)], pmc_sources=[PMC_SET]) as server:
        assert server.pmcids == ["PMC1111111", "PMC2222222"]
        response = efetch(server, "PMC2222222,999,1111111,pmc2222222", db="pmc")
        assert response.status_code == 200 and response.headers["Content-Type"] == XML_TYPE
        assert response.content.startswith(PMC_HEAD.encode())
        assert pmc_titles(response) == ["Two", "One"]
        assert pmc_titles(efetch(server, "12345", db="pmc")) == []
        assert (
            xml(efetch(server, "", db="pmc")).findtext("ERROR")
            == "ID list is empty! Possibly it has no correct IDs."
        )
        assert fetched_pmids(efetch(server, "11111111")) == ["11111111"]  # db=pubmed unchanged
        assert server.errors == []


def test_efetch_pmc_faults_match_on_db_and_short_drops_articles() -> None:
    with StandIn([efetch_document(ALPHA)], pmc_sources=[PMC_SET]) as server:
        server.inject(EFETCH, Status(500), match=lambda p: p.get("db") == "pmc")
        assert efetch(server, "11111111").status_code == 200
        assert efetch(server, "1111111", db="pmc").status_code == 500
        server.inject(EFETCH, Short(), match=lambda p: p.get("db") == "pmc")
        assert pmc_titles(efetch(server, "1111111,2222222", db="pmc")) == ["One"]
        assert [r.params.get("db") for r in server.requests_for(EFETCH)] == ["pubmed", "pmc", "pmc"]


def test_pmc_loading_from_bare_articles_folders_and_bad_input(tmp_path: Path) -> None:
    (tmp_path / "one.nxml").write_text(pmc_article("3333333", "pmc", "Three"))
    (tmp_path / "broken.xml").write_text("<article>")
    with StandIn(pmc_sources=tmp_path) as server:
        assert server.pmcids == ["PMC3333333"] and len(server.skipped) == 1
        assert server.add_pmc_articles(PMC_SET) == ["PMC1111111", "PMC2222222"]
        assert b"<article-title>Three</article-title>" in server.pmc_xml("3333333")
        with pytest.raises(ValueError, match="without a pmc/pmcid"):
            server.add_pmc_articles(b"<article><front><article-meta/></front></article>")


def test_pmc_loads_the_recorded_articles() -> None:
    folder = shared_fixture("eutils-pmc-jats/efetch_pmc.xml").parent
    with StandIn(pmc_sources=folder) as server:
        assert {"PMC8435807", "PMC3299399", "PMC3159421"} <= set(server.pmcids)
        root = xml(efetch(server, "8435807,PMC3299399", db="pmc"))
        dois = [a.findtext("front/article-meta/article-id[@pub-id-type='doi']") for a in root]
        assert dois == ["10.1183/23120541.50193-2021", "10.3389/fpsyt.2012.00018"]


# ---- the command line ---------------------------------------------------------------------------------


def test_runs_as_a_module_and_stops_on_ctrl_c(tmp_path: Path) -> None:
    (tmp_path / "records.xml").write_bytes(efetch_document(ALPHA, BETA))
    process = subprocess.Popen(
        [sys.executable, "-m", "tests.standin", "--records", str(tmp_path), "--port", "0"],
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stdout is not None
        ready, _, _ = select.select([process.stdout], [], [], 10)
        assert ready, "the stand-in printed no base URL"
        base_url = process.stdout.readline().strip()
        assert base_url.startswith("http://127.0.0.1:")
        response = requests.get(base_url + "entrez/eutils/efetch.fcgi", params={"id": "22222222"}, timeout=5)
        assert fetched_pmids(response) == ["22222222"]
        process.send_signal(signal.SIGINT)
        assert process.wait(timeout=30) == 0  # a bound for a hang, not a speed: 5 s failed under load
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    assert process.stderr is not None and "2 records" in process.stderr.read()


def test_stop_wakes_a_pending_delay_and_closes_idle_connections() -> None:
    server = StandIn([efetch_document(ALPHA)]).start()
    outcome: list[object] = []

    def delayed_fetch() -> None:
        try:
            outcome.append(efetch(server, "11111111").status_code)
        # The answer may or may not make it out before the close: a refused or broken connection, or a body
        # cut short after its headers (ChunkedEncodingError) all mean the stop reached the pending request.
        except (requests.ConnectionError, requests.exceptions.ChunkedEncodingError) as exc:
            outcome.append(exc)

    worker = threading.Thread(target=delayed_fetch, daemon=True)
    session = requests.Session()
    assert (
        session.get(server.eutils_url + "efetch.fcgi", params={"id": "11111111"}, timeout=5).status_code
        == 200
    )
    # A delay no test run outlasts: if stop() waited for it, the per-test timeout would fail this test.
    server.inject(EFETCH, Delay(3600))
    worker.start()
    time.sleep(0.1)
    server.stop()
    worker.join(timeout=30)  # the client's own timeout is 5 s; only a stop that leaves it hanging fails
    assert outcome and not worker.is_alive()
    session.close()
