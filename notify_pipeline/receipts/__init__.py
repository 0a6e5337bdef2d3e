"""Receipts: what Meta's webhooks tell after a send (statuses), and what users send (inbound
messages, marketing preferences). Plain modules, tested without the web service that wires them."""
