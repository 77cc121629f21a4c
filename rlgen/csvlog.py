"""The run's CSV logs (progress.csv, eval.csv, episodes.csv): append-only, resumable."""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Any


class CsvLog:
    """Append-only CSV whose header grows when a new column appears (the file is then rewritten)."""

    def __init__(self, path: Path, columns: list[str] | None = None, keep_until: int | None = None):
        self.path = path
        self.columns: list[str] = list(columns or [])
        self.rows: list[dict[str, Any]] = []
        if path.exists():  # resuming: keep rows up to the checkpoint's step, drop the rest
            with open(path, newline="") as f:
                reader = csv.DictReader(f)
                self.columns = list(reader.fieldnames or self.columns)
                # a row a kill cut short has missing fields (None): it comes after the checkpoint anyway
                self.rows = [r for r in reader if None not in r.values()
                             and (keep_until is None or int(float(r["step"])) <= keep_until)]
        self._rewrite()

    def append(self, row: dict[str, Any]) -> None:
        if any(k not in self.columns for k in row):
            self.columns += [k for k in row if k not in self.columns]
            self.rows.append(row)
            self._rewrite()
            return
        self.rows.append(row)
        self._writer.writerow(row)

    def merge_last(self, values: dict[str, Any]) -> None:
        """Add columns to the last row (the file is then rewritten)."""
        self.columns += [k for k in values if k not in self.columns]
        self.rows[-1] = {**self.rows[-1], **values}
        self._rewrite()

    def flush(self) -> None:
        self._file.flush()

    def close(self) -> None:
        self._file.close()

    def _rewrite(self) -> None:
        if getattr(self, "_file", None):
            self._file.close()
        self._file = open(self.path, "w", newline="")
        self._writer = csv.DictWriter(self._file, fieldnames=self.columns, restval="")
        self._writer.writeheader()
        self._writer.writerows(self.rows)
