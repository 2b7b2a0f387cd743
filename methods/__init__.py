"""Model side: backbone, shared decoder, and one module per PET method (imported to register it)."""

from methods import reference  # noqa: F401  (registers frozen, full)
from methods.registry import get_method, list_methods, register_method

__all__ = ["get_method", "list_methods", "register_method"]
