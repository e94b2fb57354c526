"""Operations: metrics, tracing, the access log, log format and redaction."""
