"""Auditor tooling over the access log: verifiable exports and the access review report.

Core code: reads the log and plain data handed in by the CLI; imports no room."""
