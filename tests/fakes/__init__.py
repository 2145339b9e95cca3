"""Local stand-ins for the services sora-bot talks to, used by the end-to-end tests."""
