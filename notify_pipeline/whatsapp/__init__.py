"""Meta's WhatsApp Cloud API: error codes, the send client, and message building."""
