"""Day-2 tasks' pure parts."""

from jupyterfab import day2


def test_sections_split_one_commands_output():
    out = "==props==\nActiveState=active\nMainPID=7\n==version==\n2.21.1\n==log==\na\nb\n"
    assert day2.parse_sections(out) == {"props": ["ActiveState=active", "MainPID=7"],
                                        "version": ["2.21.1"], "log": ["a", "b"]}
    assert day2.parse_sections("noise before any marker\n") == {}


def test_durations_read_like_uptime():
    assert day2._duration(59) == "00:00:59"
    assert day2._duration(3 * 86400 + 3661) == "3d 01:01:01"
    assert day2._duration(-5) == "00:00:00"
