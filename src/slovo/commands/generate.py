"""`slovo generate`: not built yet."""

from slovo.errors import SlovoError


def add_arguments(parser):
    pass


def run(args) -> int:
    raise SlovoError("'slovo generate' is not built yet")
