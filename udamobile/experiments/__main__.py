"""`python -m udamobile.experiments`: the table runner (udamobile/commands/table.py)."""
from udamobile.commands import table

table.run()
