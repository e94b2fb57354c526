"""Upstream calls: attempts, retries and fallbacks, pools, the HTTP client, and the deployment
state shared across replicas."""
