"""A category map: which ImageNet classes make each of your categories (`training map NAME
--classes CSV`). A category's probability is then the sum of its classes' probabilities
(consumer/heads.MapHead); no photo and no training needed.

The CSV has the shape of ../shared/images/coarse.csv: a header naming a `class_index` column
(the ImageNet class, 0-999 in torchvision's order) and a category column: the one named
`category`, else the one named `coarse`, else the last column. It is read the way spreadsheets
write it (training/labels_csv.py: byte-order mark, CRLF, blank lines, quoted fields, header in
any case); anything else is a one-line DatasetError naming the file and the row."""

from __future__ import annotations

import hashlib
import io
import json
import re
from dataclasses import dataclass
from pathlib import Path

import torch

from consumer.heads import IMAGENET_CLASSES, parse_class_map
from training.dataset import DatasetError
from training.labels_csv import OTHER_SEPARATORS, csv_records, csv_text

CATEGORY_COLUMNS = ("category", "coarse")  # looked for in this order; neither: the last column
USAGE = "--classes takes a CSV file with a class_index column and a category column (like coarse.csv)"


@dataclass(frozen=True)
class ClassMap:
    categories: list[str]  # sorted
    class_category: torch.Tensor  # [1000] long: each class's category, -1 if the map leaves it out
    column: str  # the CSV column the categories came from

    def classes(self) -> dict[str, list[int]]:
        """{category: its ImageNet class indices}, in the categories' order."""
        return {c: (self.class_category == i).nonzero().flatten().tolist() for i, c in enumerate(self.categories)}

    def readable(self, class_names: list[str]) -> dict[str, list[dict]]:
        """{category: [{class_index, class_name}]}: the map as the manifest shows it."""
        return {c: [{"class_index": i, "class_name": class_names[i]} for i in idx] for c, idx in self.classes().items()}

    def fingerprint(self) -> str:
        """SHA-256 of the map itself (categories and their classes), not of the CSV's bytes: the
        same map written with another column order, case or line ends has the same fingerprint."""
        canonical = json.dumps(self.classes(), sort_keys=True, ensure_ascii=False, separators=(",", ":"))
        return hashlib.sha256(canonical.encode()).hexdigest()

    def artefact(self) -> bytes:
        """model.pt of a version of kind "map" (what consumer/serving.Loader reads)."""
        buf = io.BytesIO()
        torch.save({"class_category": self.class_category.clone()}, buf)
        return buf.getvalue()


def read_class_map(csv_path: Path) -> ClassMap:
    """The map of the CSV, or a DatasetError saying what is wrong and where."""
    records = csv_records(csv_path, csv_text(csv_path, USAGE))
    if not records:
        raise DatasetError(f"{csv_path} is empty: {USAGE}")
    header_row, header = records[0]
    names = [c.strip().lower() for c in header]
    if "class_index" not in names:
        hint = next((f" — is the separator {s!r}?" for s in OTHER_SEPARATORS if s in header[0]), "")
        raise DatasetError(
            f"{csv_path}: row {header_row} is not a header with a class_index column "
            f"(expected a header like coarse.csv's: class_index and a category column){hint}"
        )
    index_col = names.index("class_index")
    cat_col = next((names.index(n) for n in CATEGORY_COLUMNS if n in names), len(names) - 1)
    if cat_col == index_col:
        raise DatasetError(f"{csv_path}: row {header_row}: no category column beside class_index")
    column = header[cat_col].strip()
    pairs: list[tuple[int, str]] = []
    first: dict[int, tuple[str, int]] = {}  # class -> (category, row) where it was first mapped
    for row, cells in records[1:]:
        cls, category = _pair(csv_path, row, cells, index_col, cat_col, column)
        if cls in first and first[cls][0] != category:
            raise DatasetError(
                f"{csv_path}: row {row}: class {cls} is mapped to {category!r}, and to {first[cls][0]!r} "
                f"on row {first[cls][1]}: a class belongs to one category"
            )
        first.setdefault(cls, (category, row))
        pairs.append((cls, category))
    if not pairs:
        raise DatasetError(f"{csv_path} has a header and no rows")
    found = sorted({c for _, c in pairs})
    if len(found) < 2:
        raise DatasetError(f"{csv_path} maps every class to {found[0]!r}; a map needs at least 2 categories")
    categories, index = parse_class_map(pairs)
    return ClassMap(categories, index, column)


def _pair(csv_path: Path, row: int, cells: list[str], index_col: int, cat_col: int, column: str) -> tuple[int, str]:
    """(class index, category) of one record, or a DatasetError saying what is wrong with it."""
    if len(cells) <= max(index_col, cat_col):
        hint = next((f" — is the separator {s!r}?" for s in OTHER_SEPARATORS if s in cells[0]), "")
        raise DatasetError(f"{csv_path}: row {row} has {len(cells)} column(s), the header more{hint}")
    text, category = cells[index_col].strip(), cells[cat_col].strip()
    if any(ch in text + category for ch in "\r\n"):
        raise DatasetError(f"{csv_path}: row {row}: a field runs over several lines (a quote '\"' not closed?)")
    if not re.fullmatch(r"[0-9]{1,4}", text) or int(text) >= IMAGENET_CLASSES:
        raise DatasetError(
            f"{csv_path}: row {row}: class_index {text!r} is not an ImageNet class (a whole number from 0 to "
            f"{IMAGENET_CLASSES - 1})"
        )
    if not category:
        raise DatasetError(f"{csv_path}: row {row}: class {int(text)} has no {column}")
    return int(text), category


def check_categories(map_categories: list[str], data_categories: list[str], what: str) -> None:
    """The photos' categories must be the map's, or some of them: a category the map does not
    have has no ImageNet class to start from (a DatasetError naming it)."""
    extra = sorted(set(data_categories) - set(map_categories))
    if extra:
        raise DatasetError(
            f"{what} has categor{'y' if len(extra) == 1 else 'ies'} {', '.join(map(repr, extra))} that the map "
            f"does not: its categories are {', '.join(map(repr, map_categories))}"
        )
