"""The bad-input table's totals, printed at the end of the run."""

TALLY: dict[str, dict[str, bool]] = {}
"""Per case: tried, refused (an HqueryError), culprit (named in the message), unchanged (the store's committed state)."""


def pytest_terminal_summary(terminalreporter):
    if not TALLY:
        return
    totals = {key: sum(outcome[key] for outcome in TALLY.values()) for key in ("tried", "refused", "culprit",
                                                                                "unchanged")}
    terminalreporter.write_line(
        f"bad-input table: {totals['tried']} tried, {totals['refused']} refused with an hquery error, "
        f"{totals['culprit']} naming the culprit, {totals['unchanged']} leaving the store unchanged")
