"""Above the access log: verification of the chain, seals and checkpoints (`verify.verify_report`)
and the background sealer that writes checkpoints (see meshcore/accesslog.py)."""
