"""Storage: encrypted fields, the schema, migrations and database engines.

- ``crypto``: ``FieldCipher`` (AES-GCM per value, HMAC lookup hashes)
- ``keys``: where the master key comes from (``load_key``, ``new_key``)
- ``tables``: the SQLAlchemy models; ``migrations/`` creates exactly them
- ``db``: ``database_url``, ``make_engine``, ``migrate``, ``session_factory``
- ``repository``: the queries the services use
- ``audit``: the append-only, hash-chained audit trail (``append``, ``verify``, ``cut``)
"""
