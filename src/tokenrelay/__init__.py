"""tokenrelay: one endpoint, five vendors, two client APIs."""

__version__ = "0.1.0"
