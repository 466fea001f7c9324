"""env.unpacked on its own: given its marker (and the kept environment), what it
sends and runs, and what it reports."""

from __future__ import annotations

from unit_support import drive, make_call

from jupyterfab.stack import states as stack_states  # noqa: F401  (registers env.*)


def test_env_unpacked_sends_the_bundle_once(tmp_path):
    bundle = tmp_path / "env-py3.11-abc.tar.gz"
    bundle.write_bytes(b"tarball bytes")
    call = make_call("env.unpacked", "/opt/v", {"marker": None}, bundle=str(bundle))
    ops, result = drive(call)
    assert len(ops) == 1 and ops[0].stdin == b"tarball bytes"
    # unpacked beside the live one (staging), then switched: one round trip
    unpack_args = ops[0].staged_by.parts[4:9]
    assert unpack_args == ("/opt/v", "env-py3.11-abc", "python3", ".jupyterfab-env", bundle.name)
    assert ops[0].command.parts[:2] == ("sh", "-c") and ops[0].command.parts[4:6] == ("/opt/v", "env-py3.11-abc")
    assert result.changes == {"environment": {"old": "", "new": bundle.name}}
    call = make_call("env.unpacked", "/opt/v", {"marker": bundle.name + "\n"}, bundle=str(bundle))
    ops, result = drive(call)
    assert ops == [] and result.ok and not result.changed
    call = make_call("env.unpacked", "/opt/v", {"marker": "env-old"}, test=True, bundle=str(bundle))
    ops, result = drive(call)
    assert ops == [] and result.ok is None and "would unpack" in result.comment


def test_env_unpacked_switches_back_to_a_kept_environment_without_sending_it(tmp_path):
    bundle = tmp_path / "env-py3.11-abc.tar.gz"
    bundle.write_bytes(b"tarball bytes")
    call = make_call("env.unpacked", "/opt/v", {"marker": "env-new.tar.gz\n", "kept": bundle.name + "\n"},
                     bundle=str(bundle))
    ops, result = drive(call)
    assert len(ops) == 1 and not ops[0].stdin
    assert ops[0].command.parts[4:6] == ("/opt/v", "env-py3.11-abc")
    assert result.ok and "switched /opt/v back to the kept environment" in result.comment
