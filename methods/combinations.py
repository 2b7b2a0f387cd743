"""The combinations ETRIS's Table 2 reports (Adapter + ETRIS, Conv Adapter + ETRIS), listed, swept and tested
like single methods; any other non-colliding `A+B` works by name without being listed."""

from methods.registry import register_combination

register_combination("bridger+adapter")
register_combination("bridger+convadapter")
