"""OpenLineage for civicmesh: event builders (events, dbt), naming, the durable outbox, its dispatcher
and transports, and the lineage graph read back from the outbox. Imports only the civicmesh core."""
