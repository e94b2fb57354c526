"""Customers: API keys and accounts (what billing reads)."""
