"""Source connectors, one module per kind, all behind :class:`eventdesk.core.contracts.Connector`."""
