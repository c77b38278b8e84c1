"""`slovo report`: not built yet."""

from slovo.errors import SlovoError


def add_arguments(parser):
    pass


def run(args) -> int:
    raise SlovoError("'slovo report' is not built yet")
