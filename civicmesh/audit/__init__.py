"""Auditor tooling over the access log: verifiable exports and the access review report.

Application layer: reads the log (meshcore) and plain data handed in by the CLI."""
