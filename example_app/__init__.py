"""The faststate_mw example app (FastHTML): `make run` serves it on http://127.0.0.1:5001."""
