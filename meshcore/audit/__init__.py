"""The access log's seals: Ed25519 signing, chained checkpoints, the external checkpoint sink,
verification and the background sealer (see meshcore/accesslog.py)."""
