"""Webhooks: notices delivered to each tenant's endpoint, signed, from an outbox."""
