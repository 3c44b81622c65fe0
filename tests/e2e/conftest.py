import pytest

from fakes.driver import Driver


@pytest.fixture(autouse=True)
def no_hidden_failures():
    """After each test, every open fake Discord is checked: unknown routes, errors in the fake,
    tracebacks in the bot's log (see Driver.check_clean)."""
    yield
    for driver in list(Driver.live):
        driver.check_clean()
