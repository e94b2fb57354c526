"""The request path: decide the request once, call upstream, drive the response."""
