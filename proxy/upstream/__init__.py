"""Talking to Ray: header hygiene (pure), HTTP streaming, WebSocket pumps."""
