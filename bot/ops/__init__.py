"""Operations: Prometheus metrics, the /metrics and /healthz server, event-loop lag, and Sentry reporting."""
