"""training map's CSV (training/class_map.py): coarse.csv's shape read as spreadsheets write it,
the category column chosen by one rule, and every mistake one line naming the file and row."""

import pytest

from training.class_map import check_categories, read_class_map
from training.dataset import DatasetError


def write(tmp_path, body, name="map.csv"):
    path = tmp_path / name
    path.write_bytes(body.encode() if isinstance(body, str) else body)
    return path


def test_a_spreadsheet_export_with_bom_crlf_blank_lines_and_quotes(tmp_path):
    body = '\ufeffSynset,Class_Index,Class_Name,Coarse\r\n\r\nn1,0,tench,"fish, mostly"\r\nn2,  7 ,cock,bird\r\n\r\n'
    m = read_class_map(write(tmp_path, body))
    assert m.categories == ["bird", "fish, mostly"] and m.column == "Coarse"
    assert m.class_category[0] == 1 and m.class_category[7] == 0 and int((m.class_category >= 0).sum()) == 2
    assert m.classes() == {"bird": [7], "fish, mostly": [0]}


@pytest.mark.parametrize(
    "header, column",
    [
        ("class_index,coarse,category", "category"),  # `category` first
        ("coarse,class_index,group", "coarse"),  # else `coarse`
        ("class_index,name,group", "group"),  # else the last column
    ],
)
def test_the_category_column_rule(tmp_path, header, column):
    names = header.split(",")
    rows = [",".join({"class_index": str(i)}.get(n, f"{n}{i % 2}") for n in names) for i in range(4)]
    m = read_class_map(write(tmp_path, "\n".join([header, *rows]) + "\n"))
    assert m.column == column and m.categories == [f"{column}0", f"{column}1"]


def test_the_same_map_written_differently_has_the_same_fingerprint(tmp_path):
    a = read_class_map(write(tmp_path, "class_index,coarse\n1,x\n2,y\n", "a.csv"))
    b = read_class_map(write(tmp_path, "Coarse,Class_Index\r\ny,2\r\nx,1\r\nx,1\r\n", "b.csv"))
    c = read_class_map(write(tmp_path, "class_index,coarse\n1,x\n3,y\n", "c.csv"))
    assert a.fingerprint() == b.fingerprint() != c.fingerprint()


@pytest.mark.parametrize(
    "body, message",
    [
        (None, "map.csv: no such file; --classes takes a CSV file"),
        (b"class_index,coarse\n1,caf\xe9\n", "map.csv is not UTF-8: byte 0xe9 at offset 24 (row 2)"),
        ("", "map.csv is empty"),
        ("1,fish\n2,bird\n", "map.csv: row 1 is not a header with a class_index column"),
        ("class_index;coarse\n1;fish\n", "— is the separator ';'?"),
        ("class_index\n1\n", "row 1: no category column beside class_index"),
        ("class_index,coarse\n", "has a header and no rows"),
        ("class_index,coarse\n1,fish\n1000,bird\n", "row 3: class_index '1000' is not an ImageNet class"),
        ("class_index,coarse\n-1,fish\n", "row 2: class_index '-1' is not an ImageNet class"),
        ("class_index,coarse\n\n2.5,fish\n", "row 3: class_index '2.5' is not an ImageNet class"),
        ("class_index,coarse\n1,fish\n2,\n", "row 3: class 2 has no coarse"),
        ("class_index,coarse\n1,fish\n2\n", "row 3 has 1 column(s)"),
        ("class_index,coarse\n1,fish\n2,bird\n1,bird\n", "row 4: class 1 is mapped to 'bird', and to 'fish' on row 2"),
        ("class_index,coarse\n1,fish\n2,fish\n", "maps every class to 'fish'; a map needs at least 2 categories"),
    ],
)
def test_a_bad_csv_is_one_line_naming_the_file_and_row(tmp_path, body, message):
    path = tmp_path / "map.csv" if body is None else write(tmp_path, body)
    with pytest.raises(DatasetError) as caught:
        read_class_map(path)
    assert message in str(caught.value) and "\n" not in str(caught.value)


def test_a_class_listed_twice_in_the_same_category_is_fine(tmp_path):
    assert read_class_map(write(tmp_path, "class_index,coarse\n1,a\n1,a\n2,b\n")).classes() == {"a": [1], "b": [2]}


def test_the_photos_categories_must_be_the_maps_or_some_of_them():
    check_categories(["a", "b", "c"], ["a", "c"], "DATA")
    with pytest.raises(DatasetError, match="DATA has category 'd' that the map does not: its categories are 'a', 'b'"):
        check_categories(["a", "b"], ["a", "d"], "DATA")
