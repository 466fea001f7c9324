"""Does the host's own firewall close a TCP port to new connections from the internet?

Read from what ``nft list ruleset`` and ``iptables-save`` print (nothing is changed;
ufw's rules are iptables rules, so they are read the same way), IPv4 only. The answer
leans open: a port counts as closed only when every way through an input chain ends
in a drop for it. A rule this reading does not understand (a source address, a named
set, a rate limit) is taken as possibly matching, so it can make a port open, never
closed: a firewall read wrongly never stops a deploy, it only lets certbot find out.
"""

from __future__ import annotations

import re
import shlex
from dataclasses import dataclass, field

# A rule for a packet to the port: "no" (it cannot match a new TCP connection from the
# internet), "surely" (it matches every one), "maybe".
NO, SURELY, MAYBE = "no", "surely", "maybe"
SERVICES = {"http": 80, "https": 443, "www": 80, "ssh": 22}
TERMINAL = {"accept": "accept", "drop": "drop", "reject": "drop",
            "ACCEPT": "accept", "DROP": "drop", "REJECT": "drop"}


@dataclass
class Rule:
    action: str                             # accept, drop, return, jump, goto, or "" (no verdict)
    target: str = ""                        # the chain of a jump or goto
    ports: list[tuple[int, int]] | None = None   # destination ports, None: any
    negated: bool = False                   # ports is "all but these"
    never: bool = False                     # loopback, an established connection, not TCP
    unsure: bool = False                    # a condition this reading cannot decide

    def applies(self, port: int) -> str:
        if self.never:
            return NO
        if self.ports is not None and any(a <= port <= b for a, b in self.ports) == self.negated:
            return NO
        return MAYBE if self.unsure else SURELY


@dataclass
class Chain:
    rules: list[Rule] = field(default_factory=list)
    policy: str = ""                        # a base chain's: accept or drop; "" for others


@dataclass
class Ruleset:
    """One table's chains, and which of them are input hooks (base chains)."""

    chains: dict[str, Chain] = field(default_factory=dict)
    inputs: list[str] = field(default_factory=list)

    def outcomes(self, chain: str, port: int) -> set[str]:
        """Every way a new connection to ``port`` can leave the base chain ``chain``:
        accept or drop (a return there is the policy)."""
        memo: dict[str, set[str]] = {}

        def walk(name: str, depth: int) -> set[str]:
            """How ``name`` can end: accept, drop, or return (to the rule after the jump)."""
            if depth > 32 or name not in self.chains:
                return {"return"}
            if name not in memo:
                memo[name] = self._walk(name, port, lambda target: walk(target, depth + 1))
            return memo[name]

        policy = self.chains[chain].policy or "accept"
        return {policy if o == "return" else o for o in walk(chain, 0)}

    def _walk(self, name: str, port: int, walk) -> set[str]:
        ended: set[str] = set()
        chain = self.chains[name]
        for rule in chain.rules:
            how = rule.applies(port)
            if how == NO or not rule.action:
                continue
            if rule.action in ("jump", "goto"):
                inner = walk(rule.target)
                stops = inner if rule.action == "goto" else inner - {"return"}
                goes_on = how == MAYBE or (rule.action == "jump" and "return" in inner)
            else:
                stops, goes_on = {rule.action}, how == MAYBE
            ended |= stops
            if not goes_on:
                return ended
        return ended | {chain.policy or "return"}

    def closes(self, port: int) -> bool:
        return any(self.outcomes(name, port) == {"drop"} for name in self.inputs)


def closed_ports(nft: str, iptables: str, ports: tuple[int, ...]) -> list[int]:
    """The ``ports`` some input chain drops for sure, in either reading."""
    tables = parse_nft(nft) + parse_iptables(iptables)
    return [p for p in ports if any(t.closes(p) for t in tables)]


def which_tool(nft: str, iptables: str) -> str:
    """The name to tell the user: ufw, nftables or iptables."""
    if "ufw-user-input" in nft + iptables:
        return "ufw"
    return "nftables" if re.search(r"hook input", nft) else "iptables"


# ----- iptables-save -------------------------------------------------------------------

def parse_iptables(text: str) -> list[Ruleset]:
    """The filter table's chains; INPUT is its input hook."""
    table, current = Ruleset(), ""
    for line in text.splitlines():
        line = line.strip()
        if line.startswith("*"):
            current = line[1:]
        elif current != "filter":
            continue
        elif line.startswith(":"):
            name, policy = (line[1:].split() + ["-"])[:2]
            table.chains[name] = Chain(policy={"DROP": "drop", "ACCEPT": "accept"}.get(policy, "")
                                       if name == "INPUT" else "")
        elif line.startswith("-A "):
            try:
                words = shlex.split(line)
            except ValueError:
                continue
            rule = _iptables_rule(words[2:], set(table.chains))
            table.chains.setdefault(words[1], Chain()).rules.append(rule)
    if "INPUT" in table.chains:
        table.inputs.append("INPUT")
        table.chains["INPUT"].policy = table.chains["INPUT"].policy or "accept"
        return [table]
    return []


def _iptables_rule(words: list[str], chains: set[str]) -> Rule:
    rule = Rule("")
    negate, i = False, 0
    while i < len(words):
        word, value = words[i], words[i + 1] if i + 1 < len(words) else ""
        i += 1
        if word == "!":
            negate = True
            continue
        if word in ("-j", "-g"):
            rule.action = TERMINAL.get(value) or ("return" if value == "RETURN" else "")
            if value in chains:      # else LOG, MARK and the like: no verdict
                rule.action, rule.target = ("jump" if word == "-j" else "goto"), value
            break
        i += _iptables_match(rule, word, value, negate)
        negate = False
    return rule


def _iptables_match(rule: Rule, word: str, value: str, negate: bool) -> int:
    """Apply one match option to ``rule``; the count of values it took."""
    if word == "-p":
        rule.never |= not negate and value not in ("tcp", "6", "all")
        rule.unsure |= negate
    elif word in ("-i", "--in-interface"):
        rule.never |= value == "lo" and not negate
        rule.unsure |= value != "lo" or negate
    elif word in ("--dport", "--dports", "--destination-port", "--destination-ports"):
        rule.ports, rule.negated = _ports(value, ":"), negate
        rule.unsure |= rule.ports is None
    elif word in ("--ctstate", "--state"):
        states = value.lower().split(",")
        rule.never |= "new" not in states and not negate
        rule.unsure |= negate
    elif word in ("-m", "--comment"):
        pass
    else:
        rule.unsure = True        # a source, an address type, a rate limit, ...
        takes = word.startswith("-") and value and not value.startswith("-") and value != "!"
        return 1 if takes else 0
    return 1


# ----- nft list ruleset ----------------------------------------------------------------

def parse_nft(text: str) -> list[Ruleset]:
    """Each ip or inet table's chains (IPv4 passes those); base chains on the input hook."""
    tables: list[Ruleset] = []
    table: Ruleset | None = None
    chain = ""
    depth = 0
    for raw in text.splitlines():
        line = re.sub(r'"[^"]*"', lambda m: m[0].strip('"').replace(" ", "_") or "_", raw).strip()
        line = re.sub(r"\bcomment \S+", "", line)
        opened, closed = line.count("{"), line.count("}")
        if depth == 0 and line.startswith("table "):
            family = line.split()[1]
            table = Ruleset() if family in ("ip", "inet") else None
            if table is not None:
                tables.append(table)
        elif depth == 1 and line.startswith("chain ") and table is not None:
            chain = line.split()[1]
            table.chains[chain] = Chain()
        elif depth == 2 and chain and table is not None and line:
            _nft_line(table, chain, line)
        depth += opened - closed
        if depth < 2:
            chain = ""
    return [t for t in tables if t.inputs]


def _nft_line(table: Ruleset, chain: str, line: str) -> None:
    if line.startswith("type "):
        if re.search(r"\bhook input\b", line):
            table.inputs.append(chain)
            policy = re.search(r"\bpolicy (accept|drop)\b", line)
            table.chains[chain].policy = policy[1] if policy else "accept"
        return
    if line.startswith(("policy ", "}")):
        return
    table.chains[chain].rules.append(_nft_rule(line.replace("{", " { ").replace("}", " } ")
                                               .replace(",", " , ").split()))


def _nft_rule(words: list[str]) -> Rule:
    rule = Rule("")
    i = 0
    while i < len(words):
        word = words[i]
        if word in ("accept", "drop", "reject", "return"):
            rule.action = TERMINAL.get(word, word)
            break
        if word in ("jump", "goto") and i + 1 < len(words):
            rule.action, rule.target = word, words[i + 1]
            break
        if word == "vmap":            # a verdict per value: whichever it is, it may admit
            rule.action, rule.unsure = ("accept" if "accept" in words else ""), True
            break
        i = _nft_match(rule, words, i)
    return rule


IGNORED = {"counter", "packets", "bytes", "log", "prefix", "level", "meta", "ip", "tcp", "th",
           "l4proto", "protocol", "nfproto", "ipv4", "ct", "iif", "iifname"}


def _nft_match(rule: Rule, words: list[str], i: int) -> int:
    """Apply the match at ``words[i]`` to ``rule``; the index after it."""
    word = words[i]
    value, after = _nft_value(words, i + 1)
    negate = value[:1] == ["!="]
    value = [v for v in value if v != "!="]
    if word in ("udp", "icmp", "icmpv6", "ip6", "sctp", "udplite", "ipv6", "esp", "ah", "gre"):
        rule.never = True
    elif word in ("l4proto", "protocol"):
        rule.never |= not negate and "tcp" not in value and "6" not in value
        return after
    elif word == "nfproto":
        rule.never |= "ipv6" in value and not negate
        return after
    elif word in ("iif", "iifname"):
        rule.never |= value == ["lo"] and not negate
        rule.unsure |= value != ["lo"] or negate
        return after
    elif word == "state" and i and words[i - 1] == "ct":
        rule.never |= "new" not in value and not negate
        rule.unsure |= negate
        return after
    elif word == "dport":
        rule.ports, rule.negated = _ports(",".join(value), "-"), negate
        rule.unsure |= rule.ports is None       # a named set (@ports)
        return after
    elif word in ("packets", "bytes", "prefix", "level"):
        return after
    elif word not in IGNORED:
        rule.unsure = True
    return i + 1


def _nft_value(words: list[str], i: int) -> tuple[list[str], int]:
    """The value after a keyword: a word, ``!= word`` or a ``{ set }``; and the index after it."""
    taken: list[str] = []
    if i < len(words) and words[i] == "!=":
        taken.append("!=")
        i += 1
    if i < len(words) and words[i] == "{":
        end = words.index("}", i) if "}" in words[i:] else len(words)
        return taken + [w for w in words[i + 1:end] if w != ","], end + 1
    taken += words[i:i + 1]
    i += 1
    while i + 1 < len(words) and words[i] == ",":      # established,related
        taken.append(words[i + 1])
        i += 2
    return taken, i


def _ports(text: str, dash: str) -> list[tuple[int, int]] | None:
    """``80``, ``80,443``, ``8000:8100`` (iptables) or ``8000-8100`` (nft), service names
    too; None (any port) when a part is unreadable, such as a named set."""
    found = []
    for part in text.split(","):
        low, _, high = part.strip().partition(dash)
        ends = [SERVICES.get(x, int(x) if x.isdigit() else None) for x in (low, high or low)]
        if None in ends:
            return None
        found.append((ends[0], ends[1]))
    return found
