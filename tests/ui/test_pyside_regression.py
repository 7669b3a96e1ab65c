"""PySide6-Essentials 6.12.0 on CPython 3.11 aborts when a Python ``data()`` returns None through
a proxy (none_dealloc). Our version constraints avoid it; this keeps them honest."""

from __future__ import annotations

import os
import subprocess
import sys

SCRIPT = r"""
from PySide6.QtCore import QAbstractTableModel, QModelIndex, QSortFilterProxyModel, Qt
from PySide6.QtWidgets import QApplication

class M(QAbstractTableModel):
    def rowCount(self, parent=QModelIndex()): return 0 if parent.isValid() else 10
    def columnCount(self, parent=QModelIndex()): return 0 if parent.isValid() else 3
    def data(self, index, role=Qt.ItemDataRole.DisplayRole): return None

app = QApplication([])
proxy = QSortFilterProxyModel()
source = M()
proxy.setSourceModel(source)
for _ in range(10_000):
    proxy.data(proxy.index(1, 1), Qt.ItemDataRole.DisplayRole)
print("ok")
"""


def test_proxy_over_model_returning_none_does_not_abort() -> None:
    env = dict(os.environ, QT_QPA_PLATFORM="offscreen")
    result = subprocess.run(
        [sys.executable, "-c", SCRIPT], env=env, capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.strip() == "ok"
