"""tokenrelay: one endpoint, five vendors, four client APIs."""

__version__ = "0.1.0"
