"""Model kinds as the runtime sees them (:mod:`salkit.runtime.kinds.base`); importing the package
registers the built-in ones."""

from salkit.runtime.kinds import coop, qefpn  # noqa: F401 — each registers its kind
from salkit.runtime.kinds.base import KINDS, RuntimeKind, get_kind, kind_of, known_kinds, register_kind

__all__ = ["KINDS", "RuntimeKind", "get_kind", "kind_of", "known_kinds", "register_kind"]
