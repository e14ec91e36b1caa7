"""The generic name -> object table behind the group, action, strategy and data-set registries."""

import pytest

from symwrap.errors import RegistryError, UnknownGroupError, UnknownNameError
from symwrap.registry import Registry


def test_register_as_a_decorator_and_directly_then_look_up_in_any_case():
    table = Registry("widget")

    @table.register("Tiny")
    def tiny():
        return 1

    assert table.register("big", max) is max
    assert table.get(" TINY ") is tiny and table.find("BIG") is max and table.find("none") is None
    assert "tiny" in table and "Big" in table and 3 not in table and "huge" not in table
    assert table.names() == list(table) == ["Tiny", "big"] and len(table) == 2
    assert table.items() == [("Tiny", tiny), ("big", max)]


def test_duplicates_need_override_and_unknown_names_list_the_known_ones():
    table = Registry("action", error=UnknownGroupError, hint="Register one.")
    table.register("Shout", str)
    with pytest.raises(RegistryError, match=r"^an action is already registered as 'SHOUT'; pass override=True"):
        table.register("SHOUT", int)
    assert table.register("SHOUT", int, override=True) is int and table.names() == ["SHOUT"]
    with pytest.raises(UnknownGroupError, match=r"^unknown group 'whisper'; expected one of: SHOUT. Register one.$"):
        table.get("whisper")
    with pytest.raises(UnknownNameError, match="unknown group 3"):
        table.get(3)
    data_sets = Registry("data set")
    data_sets.register("x", 1)
    with pytest.raises(RegistryError, match="^a data set is already registered as 'X'"):
        data_sets.register("X", 2)
