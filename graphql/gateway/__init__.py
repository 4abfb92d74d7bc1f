"""GraphQL gateway: Starlette + Strawberry over published snapshots."""
