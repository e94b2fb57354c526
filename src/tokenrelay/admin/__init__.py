"""Operator actions: the service layer, the admin REST API and its OpenAPI document, the console."""
