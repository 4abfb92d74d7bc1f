"""The access log's seals, below the log: Ed25519 signing, chained checkpoints and the external
checkpoint sink. Nothing here reads the log (meshcore/accesslog.py imports these)."""
