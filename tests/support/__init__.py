"""Plain helpers shared by the tests (not fixtures: those live in the conftest.py files).
``tests/`` is on ``sys.path`` (pyproject's ``[tool.pytest.ini_options] pythonpath``), so every
test module imports them the same way: ``from support.cli_run import run``."""
