"""How well images agree, in numbers and figures."""
