"""Who may do what with which data product: Casbin model and policies, the user directory,
and the one decision function every surface (gateway, exports, CLI) calls."""
