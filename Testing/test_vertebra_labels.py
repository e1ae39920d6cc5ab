import json

import pytest
from BoneReconLib.errors import InputError
from BoneReconLib.vertebra_labels import BUILTIN_TABLES, load_label_table, select_levels


def test_totalsegmentator_ids():
    table = BUILTIN_TABLES["totalsegmentator"]
    # ids of the bundled sample (documented in Resources/SampleData/README.md)
    assert [table[v] for v in range(26, 34)] == ["S1", "L5", "L4", "L3", "L2", "L1", "T12", "T11"]
    assert table[43] == "T1" and table[44] == "C7" and table[50] == "C1"
    assert len(set(table.values())) == len(table) == 25


def test_verse_ids():
    table = BUILTIN_TABLES["verse"]
    # ids of ../shared/data/ct/verse012: 17 = T10 ... 22 = L3
    assert [table[v] for v in range(17, 23)] == ["T10", "T11", "T12", "L1", "L2", "L3"]
    assert table[1] == "C1" and table[24] == "L5" and table[25] == "L6" and table[28] == "T13"


def test_csv_and_json_tables(tmp_path):
    (tmp_path / "t.csv").write_text("value,name\n# comment\n5,L1\n6,L2\n")
    assert load_label_table(str(tmp_path / "t.csv")) == {5: "L1", 6: "L2"}
    (tmp_path / "t.json").write_text(json.dumps({"7": "L3", "8": "L4"}))
    assert load_label_table(str(tmp_path / "t.json")) == {7: "L3", 8: "L4"}
    assert load_label_table("VerSe")[20] == "L1"  # names are case-insensitive


@pytest.mark.parametrize("content", ["", "value,name\n", "not json"])
def test_bad_table_files(tmp_path, content):
    path = tmp_path / ("t.json" if content == "not json" else "t.csv")
    path.write_text(content)
    with pytest.raises(InputError):
        load_label_table(str(path))


def test_unknown_table_name():
    with pytest.raises(InputError, match="Unknown label table 'nonsense'"):
        load_label_table("nonsense")


def test_select_levels_orders_l1_to_l5_and_reports_what_it_found():
    table = BUILTIN_TABLES["totalsegmentator"]
    assert select_levels([0, 26, 27, 28, 29, 30, 31, 32], table) == {31: "L1", 30: "L2", 29: "L3", 28: "L4", 27: "L5"}
    assert select_levels([29, 33], table) == {29: "L3"}
    with pytest.raises(InputError, match=r"values found: 1, 2"):
        select_levels([0, 1, 2], table)
