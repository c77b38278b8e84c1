"""The budget clock: progress, the first limit wins, and off-the-clock time in the ledger."""

from slovo.train.state import Budget, Clock


class FakeTime:
    def __init__(self):
        self.t = 0.0

    def __call__(self):
        return self.t


def test_progress_is_the_largest_fraction():
    b = Budget(time_s=100, max_steps=1000)
    assert b.progress(50, 100, 0) == 0.5
    assert b.progress(10, 600, 0) == 0.6
    assert b.progress(500, 10, 0) == 1.0


def test_first_limit_reached_stops():
    b = Budget(time_s=100, max_steps=10, max_tokens=5000)
    assert b.exhausted(99, 9, 4999) is None
    assert b.exhausted(100, 0, 0) == "time"
    assert b.exhausted(0, 10, 0) == "max_steps"
    assert b.exhausted(0, 0, 5000) == "max_tokens"


def test_eval_and_checkpoint_time_stay_off_the_clock():
    fake = FakeTime()
    clock = Clock(now=fake)
    with clock.measure("train"):
        fake.t += 3
    with clock.measure("eval"):
        fake.t += 10
    with clock.measure("checkpoint"):
        fake.t += 5
    with clock.measure("data"):
        fake.t += 1
    assert clock.train_time == 4
    assert clock.ledger["eval"] == 10 and clock.ledger["checkpoint"] == 5


def test_clock_state_round_trips():
    clock = Clock()
    clock.ledger["train"] = 12.5
    other = Clock()
    other.load_state_dict(clock.state_dict())
    assert other.train_time == 12.5
