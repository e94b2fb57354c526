"""Benchmark harness: tokenrelay against direct, nginx and LiteLLM. Run `python -m bench`."""
