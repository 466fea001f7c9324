"""The testinfra suite ``invoke verify`` runs against live hosts."""
