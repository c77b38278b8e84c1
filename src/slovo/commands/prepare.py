"""`slovo prepare`: not built yet."""

from slovo.errors import SlovoError


def add_arguments(parser):
    pass


def run(args) -> int:
    raise SlovoError("'slovo prepare' is not built yet")
