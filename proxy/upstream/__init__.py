"""Talking to Ray: header hygiene (`headers`, pure), the upstream interface (`base`), HTTP streaming
(`http`), WebSocket pumps (`websocket`), the one mapping of client errors (`errors`), and Ray's own
token (`ray_token`)."""
