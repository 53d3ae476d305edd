"""Unit tests of pulse_deploy_check, on small in-memory manifests (stdlib unittest)."""
