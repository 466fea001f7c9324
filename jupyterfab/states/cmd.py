"""cmd.run: the deployer's own shell text from the state file, run by ``sh -c``.

It runs on every apply unless ``creates``/``unless``/``onlyif`` (checked by the
engine for every state, with this state's ``runas`` and ``cwd``) say it is not
needed, or it is tied to other states with ``onchanges``.
"""

from __future__ import annotations

from ..facts.commands import shell_text_command
from ..shell import Secret
from .base import Arg, Call, Run, abs_path, env_map, state, text, user_name

OUTPUT_TAIL = 2000


def _tail(output: str) -> str:
    output = output.strip()
    return output if len(output) <= OUTPUT_TAIL else "..." + output[-OUTPUT_TAIL:]


@state("cmd.run", name=text, args={
    "cwd": Arg(abs_path),
    "runas": Arg(user_name),
    "env": Arg(env_map, default={}),
    "stdin": Arg(text),
})
def run(call: Call):
    """Run a shell command on the host (changes every time it runs: guard it with
    ``unless``, ``onlyif`` or ``creates``).

    name
        The command line, run by ``sh -c``; it may hold a secret (then never shown).
    cwd
        Absolute directory to run it in.
    runas
        Run it as this user instead of root (inside the user's confinement when the
        deploy gives it one, as it does the notebook user; else through ``runuser``).
    env
        Extra environment variables, a mapping of name to value.
    stdin
        Text handed to the command on its standard input (may be a secret).
    """
    a = call.args
    command = shell_text_command(call.name, runas=call.ctx.run_as(a["runas"]), cwd=a["cwd"],
                                 env=a["env"], seconds=call.ctx.command_timeout)
    if call.test:
        return call.would(f"would run `{command.display}`", {"command": command.display})
    stdin = a["stdin"]
    if isinstance(stdin, Secret):
        stdin = stdin.reveal()
    result = yield Run(command, stdin=stdin.encode() if stdin is not None else None, check=False)
    secret = isinstance(call.name, Secret)
    changes = {"retcode": result.rc,
               "stdout": "***" if secret else _tail(result.stdout),
               "stderr": "***" if secret else _tail(result.stderr)}
    if not result.ok:
        return call.fail(f"`{command.display}` exited {result.rc}",
                         stderr="***" if secret else result.stderr.strip(), changes=changes)
    return call.done(f"ran `{command.display}`", changes)
