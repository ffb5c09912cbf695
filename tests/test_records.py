"""The records' constructors: records._fast_init replaces the one dataclasses generates."""

from __future__ import annotations

import dataclasses
import inspect
import pickle

import pytest

from harvester.core import records
from harvester.core.records import Article, Author, Journal, PartialDate

RECORD_CLASSES = [
    obj
    for obj in vars(records).values()
    if isinstance(obj, type) and dataclasses.is_dataclass(obj) and obj.__module__ == records.__name__
]


def test_every_record_class_is_found() -> None:
    assert len(RECORD_CLASSES) == 19  # RejectedRecord (issue 13) is the nineteenth
    assert {Article, Author, Journal, PartialDate} <= set(RECORD_CLASSES)


@pytest.mark.parametrize("cls", RECORD_CLASSES, ids=lambda cls: cls.__name__)
def test_positional_and_keyword_values_land_in_their_own_fields(cls: type) -> None:
    names = [f.name for f in dataclasses.fields(cls)]
    values = [f"value of {name}" for name in names]  # a distinct value per field
    by_position = cls(*values)
    by_keyword = cls(**dict(zip(names, values, strict=True)))
    assert [getattr(by_position, name) for name in names] == values
    assert by_position == by_keyword
    assert pickle.loads(pickle.dumps(by_position)) == by_position


@pytest.mark.parametrize("cls", RECORD_CLASSES, ids=lambda cls: cls.__name__)
def test_signature_and_defaults_are_the_dataclass_ones(cls: type) -> None:
    parameters = inspect.signature(cls).parameters
    assert list(parameters) == [f.name for f in dataclasses.fields(cls)]
    for f in dataclasses.fields(cls):
        if f.default is not dataclasses.MISSING:
            assert parameters[f.name].default == f.default
        elif f.default_factory is dataclasses.MISSING:
            assert parameters[f.name].default is inspect.Parameter.empty


def test_default_factories_are_called() -> None:
    article = Article(pmid="1")
    assert article.journal == Journal()
    assert article.pub_date == PartialDate()
    assert article.ids == () and article.raw_xml is None and article.pmid_version == 1


def test_records_stay_frozen_and_arguments_are_checked() -> None:
    author = Author(1, "Smith")
    with pytest.raises(dataclasses.FrozenInstanceError):
        author.last_name = "Jones"  # type: ignore[misc]
    with pytest.raises(TypeError):
        Author()  # type: ignore[call-arg]
    with pytest.raises(TypeError):
        Author(1, nickname="x")  # type: ignore[call-arg]
    with pytest.raises(TypeError):
        PartialDate(2022, 3, 8, None, "2022 Mar 8", "extra")  # type: ignore[call-arg]
    with pytest.raises(TypeError):
        Author(1, "Smith", last_name="Jones")  # type: ignore[misc]


def test_fast_init_refuses_what_it_does_not_handle() -> None:
    @dataclasses.dataclass(frozen=True, slots=True)
    class KeywordOnly:
        a: int
        b: int = dataclasses.field(default=0, kw_only=True)

    @dataclasses.dataclass(frozen=True, slots=True)
    class PostInit:
        a: int

        def __post_init__(self) -> None:
            pass

    for cls in (KeywordOnly, PostInit):
        with pytest.raises(TypeError, match="plain positional fields only"):
            records._fast_init(cls)
