"""Model side: backbone, shared decoder, and one module per PET method (importing a module registers it)."""

from methods import adapter, bridger, compacter, convadapter, lora, prompt, reference  # noqa: F401, I001
from methods import combinations  # noqa: F401  (after the single methods it combines)
from methods.registry import get_method, list_methods, register_method

__all__ = ["get_method", "list_methods", "register_method"]
