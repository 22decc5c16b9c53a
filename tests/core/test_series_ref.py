"""SeriesRef names a series the same way everywhere, and its key round-trips."""

from __future__ import annotations

import pytest

from medstation.core.series import SeriesRef, series_key


def test_key_round_trips_with_and_without_a_part():
    ref = SeriesRef("1.2.3", "1.2.3.4", 2)
    assert ref.key == "1.2.3.4#2"
    assert SeriesRef.parse(ref.key, "1.2.3") == ref
    whole = SeriesRef("1.2.3", "1.2.3.4")
    assert whole.key == "1.2.3.4" and SeriesRef.parse("1.2.3.4", "1.2.3") == whole
    assert ref.whole() == whole and whole.with_part(2) == ref
    assert SeriesRef.from_dict(ref.to_dict()) == ref
    assert series_key(ref) == series_key("1.2.3.4#2") == "1.2.3.4#2"
    assert str(ref) == ref.key


def test_refs_are_values_usable_as_dict_keys():
    a, b = SeriesRef("s", "x", 1), SeriesRef("s", "x", 1)
    assert a == b and hash(a) == hash(b) and len({a, b}) == 1
    assert sorted([SeriesRef("s", "x", 2), a]) == [a, SeriesRef("s", "x", 2)]


@pytest.mark.parametrize("key", ["(no series UID) /data/scan#a.dcm", "1.2#", "1.2#x"])
def test_only_a_trailing_number_is_a_part(key):
    ref = SeriesRef.parse(key)
    assert ref.series_uid == key and ref.part == 0
    assert SeriesRef.parse(ref.with_part(3).key) == ref.with_part(3)


def test_a_negative_part_is_refused():
    with pytest.raises(ValueError, match="0 or more"):
        SeriesRef("s", "1.2", -1)
