"""Protocol clients: what a protocol's source kind (connectors/<kind>/) and broker kind
(brokers/<kind>/) share: connect options, credentials, TLS, the classification of connection
errors, the checks of names and subjects. A layer between connectors|brokers and the core
(pyproject.toml's layers contract): a kind may import its protocol's client package, never the
other kind's package.
"""
