"""`blipd bridge` (daemon buses -> MQTT + Home Assistant, webhooks) and `blipd relay` (fan-in proxy)."""
