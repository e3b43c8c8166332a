"""File dialogs sized to their content.

Qt's own (non-native) file dialog opens small, with its columns cut; the platform's
native dialog (Windows, macOS, a desktop portal) sizes itself. `file_dialog` builds a
dialog the same way for every caller and, when it is Qt's own, makes it large enough
for long file names and sizes its columns to their content as each folder loads.
"""

from __future__ import annotations

from PySide6.QtWidgets import QFileDialog, QHeaderView, QTreeView, QWidget

__all__ = [
    "MIN_DIALOG_SIZE",
    "choose_directory",
    "choose_open_files",
    "choose_save_file",
    "file_dialog",
]

#: Smallest size of Qt's own file dialog, in pixels (width, height).
MIN_DIALOG_SIZE = (900, 560)


def _fit_columns(dialog: QFileDialog) -> None:
    for view in dialog.findChildren(QTreeView):
        header = view.header()
        header.setStretchLastSection(False)
        header.setSectionResizeMode(0, QHeaderView.ResizeMode.Stretch)
        for column in range(1, header.count()):
            header.setSectionResizeMode(column, QHeaderView.ResizeMode.ResizeToContents)


def file_dialog(
    parent: QWidget | None,
    caption: str,
    directory: str,
    mode: QFileDialog.FileMode,
    name_filters: list[str] | None = None,
    *,
    save: bool = False,
) -> QFileDialog:
    """A file dialog for ``mode``, sized to its content when it is Qt's own."""
    dialog = QFileDialog(parent, caption, directory)
    dialog.setFileMode(mode)
    if save:
        dialog.setAcceptMode(QFileDialog.AcceptMode.AcceptSave)
    if mode == QFileDialog.FileMode.Directory:
        dialog.setOption(QFileDialog.Option.ShowDirsOnly, True)
    if name_filters:
        dialog.setNameFilters(name_filters)
    dialog.setViewMode(QFileDialog.ViewMode.Detail)
    width, height = MIN_DIALOG_SIZE
    if parent is not None:
        window = parent.window()
        width = max(width, int(window.width() * 0.6))
        height = max(height, int(window.height() * 0.6))
    dialog.resize(width, height)
    _fit_columns(dialog)
    dialog.directoryEntered.connect(lambda _path: _fit_columns(dialog))
    return dialog


def choose_directory(parent: QWidget | None, caption: str, directory: str) -> str:
    """Ask for a folder; "" when cancelled."""
    dialog = file_dialog(parent, caption, directory, QFileDialog.FileMode.Directory)
    return dialog.selectedFiles()[0] if dialog.exec() and dialog.selectedFiles() else ""


def choose_open_files(
    parent: QWidget | None, caption: str, directory: str, name_filter: str
) -> list[str]:
    """Ask for existing files; [] when cancelled."""
    dialog = file_dialog(
        parent, caption, directory, QFileDialog.FileMode.ExistingFiles, name_filter.split(";;")
    )
    return list(dialog.selectedFiles()) if dialog.exec() else []


def choose_save_file(
    parent: QWidget | None, caption: str, path: str, name_filters: list[str], selected: str
) -> tuple[str, str]:
    """Ask where to save; ("", "") when cancelled, else the path and the chosen filter."""
    dialog = file_dialog(
        parent, caption, path, QFileDialog.FileMode.AnyFile, name_filters, save=True
    )
    dialog.selectNameFilter(selected)
    if not dialog.exec() or not dialog.selectedFiles():
        return "", ""
    return dialog.selectedFiles()[0], dialog.selectedNameFilter()
