"""civicmesh core: settings, the metadata store, the product catalog and product specs.

Every room reads this package; it imports no room.
"""
