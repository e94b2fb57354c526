"""Serving: the CLI, the ASGI app and its routes, the HTTP guard, the embedded emulator wiring."""
