"""The Frontend/StreamRenderer Protocols, re-exported: they live in `tokenrelay.gateway.codec`,
below the frontends, because the gateway calls them and the frontends implement them."""

from tokenrelay.gateway.codec import Frontend, StreamRenderer

__all__ = ["Frontend", "StreamRenderer"]
