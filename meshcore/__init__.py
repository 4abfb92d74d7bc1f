"""The leaf core every room shares: settings, the metadata store, the catalog of products and
snapshots, product specs, snapshot files, and the access log with its seals. It imports no room
(checked by import-linter: `make test`)."""
