"""The Frontend/StreamRenderer Protocols, re-exported: they live in `tokenrelay.codec`, below
the relay, because the relay calls them and the frontends (above the relay) implement them."""

from tokenrelay.codec import Frontend, StreamRenderer

__all__ = ["Frontend", "StreamRenderer"]
