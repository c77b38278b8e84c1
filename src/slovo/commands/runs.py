"""`slovo runs`: not built yet."""

from slovo.errors import SlovoError


def add_arguments(parser):
    pass


def run(args) -> int:
    raise SlovoError("'slovo runs' is not built yet")
