"""fastgw: a self-hosted API gateway in the image of AWS API Gateway."""

__version__ = "0.1.0"

__all__ = ["__version__"]
