"""Articles as VuFind Solr documents (the ``biblio`` core's field names), and a streamed JSON export.

:func:`solr_document` is pure: it turns one document of :func:`db.documents.load_documents` into the
fields a VuFind catalogue holds for a PubMed article, spelled and shaped as in a record of a VuFind PMC
harvest (a field VuFind's schema declares multi-valued is a list even when it has one value; see
:data:`MULTI_VALUED`). Empty fields are left out, as a Solr update would drop them anyway.

Record ids (``id``), stable across runs and databases:

- ``pubmed-<PMC number>`` when the article has a PMCID (``pubmed-8958025``): the id VuFind's PMC harvest
  gives, so a record exported here replaces the harvested one instead of duplicating it;
- else ``pubmed-pmid-<PMID>``;
- else (an article known only from Crossref) ``crossref-<DOI>``, the DOI with every character other than
  ASCII letters, digits, "." and "-" written as "_" and two upper-case hex digits per UTF-8 byte
  (``crossref-10.1000_2Fabc``): reversible, and free of "/", which VuFind's record URLs cannot carry.

Fields beyond the identifiers: titles cleaned as VuFind cleans a MARC title (PubMed's closing full stop
and the brackets of a translated title dropped); ``author`` the persons as "Last, Fore", groups in
``author_corporate``; ``language`` English names of PubMed's codes (:data:`LANGUAGE_NAMES`); ``topic`` the
article's subjects (PMC's, else Crossref's, as the merge policy chose) followed by its MeSH descriptors,
geographic descriptors going to ``geographic``; ``format`` "Online", the kind (Article, Book Chapter,
Preprint, ...) and "Text"; ``url`` the PMC, PubMed and DOI links, in that order, as the catalogue writes
them.

``collection``, ``institution`` and ``record_format`` are those of the PMC harvest ("PubMed", "National
Center for Biotechnology Information", "MEDLINE/PubMed") except for Crossref-only articles, which get
"Crossref" for all three. An article's id changes when it gains a PMCID (or a Crossref-only article
gains its PubMed record): an index fed from full exports should drop the ids an export no longer has.
"""

from __future__ import annotations

import json
import re
import unicodedata
from collections.abc import Iterable, Mapping
from typing import Any, TextIO

from sqlalchemy.engine import Engine

from db.documents import load_documents

__all__ = ["LANGUAGE_NAMES", "MULTI_VALUED", "export_solr", "solr_document", "solr_id"]

PMC_URL = "https://www.ncbi.nlm.nih.gov/pmc/articles/{pmcid}/"
PUBMED_URL = "https://www.ncbi.nlm.nih.gov/pubmed/{pmid}"
DOI_URL = "http://dx.doi.org/{doi}"  # as the catalogue writes it (VuFind's PMC harvest), not doi.org

NCBI = "National Center for Biotechnology Information"
PUBMED_RECORD_FORMAT = "MEDLINE/PubMed"
CROSSREF = "Crossref"

# Fields VuFind's biblio schema declares multiValued, of those written here: lists even with one value.
MULTI_VALUED: frozenset[str] = frozenset(
    {
        "author",
        "author_corporate",
        "author_facet",
        "collection",
        "doi_str_mv",
        "format",
        "geographic",
        "geographic_facet",
        "institution",
        "issn",
        "language",
        "publishDate",
        "publisher",
        "spellingShingle",
        "topic",
        "topic_facet",
        "url",
        "work_keys_str_mv",
    }
)

# PubMed's language codes (MEDLINE/PubMed "Language" element: ISO 639-2/B, NLM's list) to English names,
# plus "scc"/"scr", the Serbian and Croatian codes of older records.
LANGUAGE_NAMES: Mapping[str, str] = {
    "afr": "Afrikaans",
    "alb": "Albanian",
    "amh": "Amharic",
    "ara": "Arabic",
    "arm": "Armenian",
    "aze": "Azerbaijani",
    "ben": "Bengali",
    "bos": "Bosnian",
    "bul": "Bulgarian",
    "cat": "Catalan",
    "chi": "Chinese",
    "cze": "Czech",
    "dan": "Danish",
    "dut": "Dutch",
    "eng": "English",
    "epo": "Esperanto",
    "est": "Estonian",
    "fin": "Finnish",
    "fre": "French",
    "geo": "Georgian",
    "ger": "German",
    "gla": "Scottish Gaelic",
    "gre": "Greek",
    "heb": "Hebrew",
    "hin": "Hindi",
    "hrv": "Croatian",
    "hun": "Hungarian",
    "ice": "Icelandic",
    "ind": "Indonesian",
    "ita": "Italian",
    "jpn": "Japanese",
    "kin": "Kinyarwanda",
    "kor": "Korean",
    "lat": "Latin",
    "lav": "Latvian",
    "lit": "Lithuanian",
    "mac": "Macedonian",
    "mal": "Malayalam",
    "mao": "Maori",
    "may": "Malay",
    "mul": "Multiple languages",
    "nor": "Norwegian",
    "per": "Persian",
    "pol": "Polish",
    "por": "Portuguese",
    "pus": "Pushto",
    "rum": "Romanian",
    "rus": "Russian",
    "san": "Sanskrit",
    "scc": "Serbian",
    "scr": "Croatian",
    "slo": "Slovak",
    "slv": "Slovenian",
    "spa": "Spanish",
    "srp": "Serbian",
    "swe": "Swedish",
    "tha": "Thai",
    "tur": "Turkish",
    "ukr": "Ukrainian",
    "und": "Undetermined",
    "urd": "Urdu",
    "vie": "Vietnamese",
    "wel": "Welsh",
}

# ISO 639-1 codes (Crossref's "language") and ISO 639-2/T codes of the same languages, to PubMed's codes.
_LANGUAGE_ALIASES: Mapping[str, str] = {
    "af": "afr",
    "sq": "alb",
    "sqi": "alb",
    "am": "amh",
    "ar": "ara",
    "hy": "arm",
    "hye": "arm",
    "az": "aze",
    "bn": "ben",
    "bs": "bos",
    "bg": "bul",
    "ca": "cat",
    "zh": "chi",
    "zho": "chi",
    "cs": "cze",
    "ces": "cze",
    "da": "dan",
    "nl": "dut",
    "nld": "dut",
    "en": "eng",
    "eo": "epo",
    "et": "est",
    "fi": "fin",
    "fr": "fre",
    "fra": "fre",
    "ka": "geo",
    "kat": "geo",
    "de": "ger",
    "deu": "ger",
    "gd": "gla",
    "el": "gre",
    "ell": "gre",
    "he": "heb",
    "hi": "hin",
    "hr": "hrv",
    "hu": "hun",
    "is": "ice",
    "isl": "ice",
    "id": "ind",
    "it": "ita",
    "ja": "jpn",
    "rw": "kin",
    "ko": "kor",
    "la": "lat",
    "lv": "lav",
    "lt": "lit",
    "mk": "mac",
    "mkd": "mac",
    "ml": "mal",
    "mi": "mao",
    "mri": "mao",
    "ms": "may",
    "msa": "may",
    "no": "nor",
    "fa": "per",
    "fas": "per",
    "pl": "pol",
    "pt": "por",
    "ps": "pus",
    "ro": "rum",
    "ron": "rum",
    "ru": "rus",
    "sa": "san",
    "sk": "slo",
    "slk": "slo",
    "sl": "slv",
    "es": "spa",
    "sr": "srp",
    "sv": "swe",
    "th": "tha",
    "tr": "tur",
    "uk": "ukr",
    "ur": "urd",
    "vi": "vie",
    "cy": "wel",
    "cym": "wel",
}

# VuFind's format for a Crossref work type (PubMed's record types: "journal-article" is an Article,
# "book-article" a Book Chapter). Anything else is an Article.
_FORMATS: Mapping[str, str] = {
    "journal-article": "Article",
    "book-article": "Book Chapter",
    "book-chapter": "Book Chapter",
    "book-section": "Book Chapter",
    "book-part": "Book Chapter",
    "reference-entry": "Book Chapter",
    "book": "Book",
    "monograph": "Book",
    "edited-book": "Book",
    "reference-book": "Book",
    "proceedings-article": "Conference Proceeding",
    "posted-content": "Preprint",
    "dissertation": "Thesis",
    "report": "Report",
    "dataset": "Dataset",
}
_NOT_TEXT = frozenset({"Dataset"})

_LEADING_ARTICLES = ("a", "an", "the")  # VuFind's stripArticles
_ID_SAFE = re.compile(r"[A-Za-z0-9.\-]")
_PERIOD_KEPT = re.compile(r"[JS]r\.$")  # "Jr." and "Sr." keep their period (SolrMarc's cleanData)
_PERIOD_DROPPED = re.compile(r"(?:[^\W_]{2}|[^\w\s])\.$")


def solr_id(doc: Mapping[str, Any]) -> str:
    """The record id of a document: see the module docstring.

    Raises:
        ValueError: the document has no PMCID, PMID or DOI.
    """
    pmcid = doc.get("pmcid")
    if pmcid:
        return "pubmed-" + str(pmcid).removeprefix("PMC")
    pmid = doc.get("pmid")
    if pmid:
        return f"pubmed-pmid-{pmid}"
    doi = doc.get("doi")
    if doi:
        return "crossref-" + "".join(
            ch if _ID_SAFE.fullmatch(ch) else "".join(f"_{b:02X}" for b in ch.encode()) for ch in doi
        )
    raise ValueError("a document without a PMCID, PMID or DOI has no Solr id")


def solr_document(doc: Mapping[str, Any]) -> dict[str, Any]:
    """The VuFind Solr document of one article document (of :func:`db.documents.load_documents`).

    Keys a document lacks count as empty, so a document exported by an older version still converts.

    Raises:
        ValueError: the document has no PMCID, PMID or DOI, so no id.
    """
    pmcid, pmid, doi = doc.get("pmcid"), doc.get("pmid"), doc.get("doi")
    crossref_only = not pmcid and not pmid
    title = _clean_title(doc.get("title") or "")
    persons = [_person_name(a) for a in doc.get("authors") or [] if a.get("last_name")]
    corporate = [
        a["collective_name"]
        for a in doc.get("authors") or []
        if a.get("collective_name") and not a.get("last_name")
    ]
    mesh = doc.get("mesh") or []
    topics = _unique(
        [*(doc.get("subjects") or []), *(m["descriptor"] for m in mesh if m.get("type") != "Geographic")]
    )
    places = _unique(m["descriptor"] for m in mesh if m.get("type") == "Geographic")
    journal = doc.get("journal") or {}
    year = _year(doc)
    kind = _FORMATS.get(doc.get("crossref_type") or doc.get("record_type") or "", "Article")
    fields: dict[str, Any] = {
        "id": solr_id(doc),
        "record_format": CROSSREF if crossref_only else PUBMED_RECORD_FORMAT,
        "collection": [CROSSREF if crossref_only else "PubMed"],
        "institution": [CROSSREF if crossref_only else NCBI],
        "title": title,
        "title_short": title,
        "title_full": title,
        "title_fullStr": title,
        "title_full_unstemmed": title,
        "title_sort": strip_articles(title),
        "author": persons,
        "author_facet": persons,
        "author_corporate": corporate,
        "author_sort": (persons or corporate or [None])[0],
        "description": " ".join((doc.get("abstract") or "").split()),
        "format": ["Online", kind] if kind in _NOT_TEXT else ["Online", kind, "Text"],
        "language": _unique(language_name(code) for code in doc.get("language") or []),
        "publishDate": [year] if year else [],
        "publisher": [doc["publisher"]] if doc.get("publisher") else [],
        "topic": topics,
        "topic_facet": topics,
        "geographic": places,
        "geographic_facet": places,
        "url": [
            *([PMC_URL.format(pmcid=pmcid)] if pmcid else []),
            *([PUBMED_URL.format(pmid=pmid)] if pmid else []),
            *([DOI_URL.format(doi=doi)] if doi else []),
        ],
        "doi_str_mv": [doi] if doi else [],
        "issn": _unique(journal.get(k) for k in ("issn_print", "issn_electronic", "issn_linking")),
        "container_title": journal.get("title"),
        "container_volume": journal.get("volume"),
        "container_issue": journal.get("issue"),
        "container_start_page": (journal.get("pages") or "").split("-")[0].strip() or None,
        "spellingShingle": [*topics, *persons, *corporate, *([title] if title else [])],
        "work_keys_str_mv": work_keys(title, [*persons, *corporate]),
        **_icite_fields(doc.get("metrics") or {}),
    }
    return {key: value for key, value in fields.items() if value not in (None, "", [])}


def export_solr(engine: Engine, out: TextIO, *, include_deleted: bool = False) -> int:
    """Write every article as a Solr document, one JSON array, streamed; returns how many were written.

    The array has one document per line, so memory stays flat however large the table, and the output
    can be posted to Solr's ``/update/json`` as it is.

    Raises:
        StorageError: the database could not be read.
        ValueError: an article has no PMCID, PMID or DOI.
    """
    count = 0
    out.write("[")
    for doc in load_documents(engine, include_deleted=include_deleted):
        out.write(",\n" if count else "\n")
        out.write(json.dumps(solr_document(doc), ensure_ascii=False))
        count += 1
    out.write("\n]\n")
    return count


def _icite_fields(metrics: Mapping[str, Any]) -> dict[str, Any]:
    """The latest iCite metrics as VuFind dynamic string fields (``*_str``, in every VuFind schema)."""
    icite = metrics.get("icite") or {}
    values = {
        "icite_citation_count_str": icite.get("citation_count"),
        "icite_rcr_str": icite.get("relative_citation_ratio"),
        "icite_nih_percentile_str": icite.get("nih_percentile"),
        "icite_valid_on_str": icite.get("valid_on"),
    }
    return {key: str(value) for key, value in values.items() if value is not None}


def language_name(code: str) -> str:
    """The English name of a PubMed (ISO 639-2/B), ISO 639-2/T or ISO 639-1 code; unknown codes as given."""
    key = code.strip().lower()
    return LANGUAGE_NAMES.get(_LANGUAGE_ALIASES.get(key, key), code)


def strip_articles(title: str) -> str:
    """A sortable title as VuFind makes it: lower-case, without one leading "a", "an" or "the"."""
    text = title.strip().lower()
    for article in _LEADING_ARTICLES:
        if text.startswith(article + " "):
            return text[len(article) + 1 :]
    return text


def work_keys(title: str, authors: Iterable[str]) -> list[str]:
    """VuFind's work keys ("AT <author> <title>"), with the title as it is and without its leading article.

    Keys are normalised as VuFind's default rules do (decomposed, lower-case, letters and digits only),
    except that non-Latin scripts are kept rather than transliterated.
    """
    names = [_work_key_part(a) for a in authors]
    titles = _unique(_work_key_part(t) for t in (title, strip_articles(title)))
    return [f"AT {name} {key}" for key in titles if key for name in names if name]


def _work_key_part(text: str) -> str:
    decomposed = unicodedata.normalize("NFD", text).lower()
    kept = "".join(ch for ch in decomposed if unicodedata.category(ch)[0] in "LN")
    return unicodedata.normalize("NFKC", kept)


def _clean_title(title: str) -> str:
    """The title as VuFind cleans one: no trailing "/", ":", ";", "," or full stop, no enclosing brackets.

    PubMed ends titles with a full stop and puts translated ones in brackets ("[Title].").
    """
    current = title
    while True:
        previous = current
        current = re.sub(r"\s*[,/;:]$", "", current.strip())
        if current.endswith(".") and not _PERIOD_KEPT.search(current) and _PERIOD_DROPPED.search(current):
            current = current[:-1]
        current = _remove_outer_brackets(current)
        if not current or current == previous:
            return current


def _remove_outer_brackets(text: str) -> str:
    text = text.strip()
    lefts, rights = text.count("["), text.count("]")
    if text.startswith("[") and text.endswith("]") and lefts == rights == 1:
        return text[1:-1]
    if text.startswith("[") and rights == 0:
        return text[1:]
    if text.endswith("]") and lefts == 0:
        return text[:-1]
    return text


def _person_name(author: Mapping[str, Any]) -> str:
    first = author.get("fore_name") or author.get("initials")
    return ", ".join(filter(None, (author.get("last_name"), first, author.get("suffix"))))


def _year(doc: Mapping[str, Any]) -> str | None:
    if doc.get("pub_year"):
        return str(doc["pub_year"])
    for key in ("pub_date", "epub_date"):
        match = re.match(r"\d{4}", doc.get(key) or "")
        if match:
            return match.group()
    return None


def _unique(values: Iterable[str | None]) -> list[str]:
    return list(dict.fromkeys(v for v in values if v))
