"""The vehicle-ingest service: configuration, wiring, HTTP, MQTT, CLI."""
