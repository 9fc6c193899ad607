"""Model kinds as export sees them (:mod:`salkit.export.kinds.base`); importing the package
registers the built-in ones."""

from salkit.export.kinds import coop, qefpn  # noqa: F401 — each registers its kind
from salkit.export.kinds.base import EXPORT_KINDS, ExportKind, get_export_kind, register_export_kind

__all__ = ["EXPORT_KINDS", "ExportKind", "get_export_kind", "register_export_kind"]
