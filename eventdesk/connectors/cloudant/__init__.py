"""The IBM Cloudant / Apache CouchDB source kind (kinds ``cloudant`` and ``couchdb``).

Follows a database's ``_changes`` feed and turns each change into an event. The package is
split by concern: ``settings`` (the schemas and their typed settings), ``errors`` (failures
named and classed terminal or retried), ``transport`` (the SDK client and every workaround
under it), ``changes`` and ``feed_stream`` (the feed's format and bytes), ``backlog`` (the pages
read before the live feed), ``feed`` (the reader thread), ``connector`` (the class the runtime runs).
"""

from eventdesk.connectors.cloudant.changes import change_to_event, page_end, parse_line, since_param
from eventdesk.connectors.cloudant.connector import CloudantConnector
from eventdesk.connectors.cloudant.settings import (
    DATASOURCE_SCHEMA,
    MODEL_SCHEMA,
    CloudantDatasourceSettings,
    CloudantModelSettings,
    check_database_name,
)

__all__ = [
    "DATASOURCE_SCHEMA",
    "MODEL_SCHEMA",
    "CloudantConnector",
    "CloudantDatasourceSettings",
    "CloudantModelSettings",
    "change_to_event",
    "check_database_name",
    "page_end",
    "parse_line",
    "since_param",
]
