"""Helpers the tests share, one module per area (engine, receipts, alerts, ...); test modules import
from here and never from one another."""
