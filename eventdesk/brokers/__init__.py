"""Broker publishers, one module per kind, all behind :class:`eventdesk.core.contracts.Publisher`."""
