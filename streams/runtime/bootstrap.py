"""``loa init``: bring a cluster to what Loa's workers need, idempotently, and say what changed.

Where it sits: before everything else in a deployment (compose runs it as a one-shot service the
workers depend on, Kubernetes as a Job the workers wait for). It makes the topics of the layout
(``streams.kafkaio.clients.topic_specs``, with the cluster's replication), grants the ACLs the
``LOA_ACL_*`` principals need where this principal may (``streams.topics.acl_bindings``,
``streams.kafkaio.acls``), loads the agency registry from files (as ``loa agencies load``) and
sets channel limits from a file (as ``loa channels set``/``lift``). Nothing else ever creates
topics: read-only commands only check them, and a worker that finds them missing or with other
partition counts refuses to start (exit 6).

Guarantee: running it twice changes nothing the second time. Existing topics are never altered
(a topic with other partitions or replication is reported, exit 6: it holds data, and changing
it is an operator's decision; nothing else is then written). ACLs are only added, each only
when the broker lacks exactly that binding; none are deleted. Agencies and limits are written
only where the topic's current record differs from the file, so the report's "created",
"loaded" and "set" lines are exactly what this run wrote.

ACLs never fail the run: with no ``LOA_ACL_*`` principal set they are not managed; where the
broker has no authorizer, or this principal may not describe or alter ACLs (no DESCRIBE or
ALTER on the cluster resource), the report says so in one line (with the bindings missing) and
the agencies and limits are still done; the exit code is what the topics make it (0 ready,
6 mis-sized). Run ``deploy/kafka/cluster.sh grant`` or ask the cluster admin then.
"""

from __future__ import annotations

import math
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from streams.errors import BadInputFile
from streams.kafkaio.acls import AclState, ensure_acls
from streams.kafkaio.clients import TopicState, init_topics, topics_problem
from streams.records import CHANNELS
from streams.settings.model import Settings
from streams.topics import acl_bindings

__all__ = ["InitReport", "read_channel_limits", "run_init"]


@dataclass(frozen=True, slots=True)
class InitReport:
    """What ``loa init`` found and did."""

    #: every topic of the layout: created, present, mis-sized or hidden
    topics: list[TopicState]
    #: one line per agency: loaded (new or changed) or unchanged
    agencies: list[str] = field(default_factory=list)
    #: one line per channel named in the limits file: set, lifted or unchanged
    channels: list[str] = field(default_factory=list)
    #: the ACLs found and created (None: not reached, the topics were not usable)
    acls: AclState | None = None

    @property
    def problem(self) -> str:
        """Why workers would refuse this cluster (empty: they start)."""
        return topics_problem(self.topics)

    def lines(self) -> list[str]:
        created = sum(s.status == "created" for s in self.topics)
        out = [f"topics: {created} created, {len(self.topics) - created} checked"]
        out += [f"  {s.line()}" for s in self.topics]
        if self.acls is not None:
            out += self.acls.lines()
        if self.agencies:
            out.append("agencies:")
            out += [f"  {line}" for line in self.agencies]
        if self.channels:
            out.append("channel limits:")
            out += [f"  {line}" for line in self.channels]
        return out


def read_channel_limits(path: Path) -> dict[str, float | None]:
    """A TOML file of ``channel = tasks per second`` (optionally under ``[channels]``); a
    negative rate lifts the limit ("unlimited"). :class:`BadInputFile` names what is wrong."""
    try:
        doc = tomllib.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise BadInputFile(f"channel limits file {path}: {exc.strerror}") from None
    except tomllib.TOMLDecodeError as exc:
        raise BadInputFile(f"channel limits file {path}: not valid TOML ({exc})") from None
    table = doc.get("channels", doc) if set(doc) <= {"channels"} else doc
    limits: dict[str, float | None] = {}
    for name, value in table.items():
        if name not in CHANNELS:
            raise BadInputFile(f"{path}: {name}: not a channel (one of {', '.join(CHANNELS)})")
        ok = isinstance(value, int | float) and not isinstance(value, bool)
        if not ok or not math.isfinite(value):
            raise BadInputFile(f"{path}: {name} = {value!r}: not a number of tasks per second")
        limits[name] = None if value < 0 else float(value)
    return limits


async def run_init(
    settings: Settings,
    *,
    agencies_dir: Path | None,
    channel_limits: Mapping[str, float | None] | None = None,
) -> InitReport:
    """Topics, then (when every topic is usable) ACLs, agencies and channel limits."""
    topics = await init_topics(settings)
    if topics_problem(topics):  # writing to a mis-sized layout would spread records wrongly
        return InitReport(topics)
    report = InitReport(topics, acls=await ensure_acls(settings, acl_bindings(settings)))
    if agencies_dir is not None:
        report.agencies.extend(await _agencies(settings, agencies_dir))
    if channel_limits:
        report.channels.extend(await _channels(settings, channel_limits))
    return report


async def _agencies(settings: Settings, source: Path) -> list[str]:
    from streams.ingest.agencies import load_agency_files
    from streams.ingest.agency_service import load_agencies, read_agencies

    wanted = load_agency_files(source)  # InvalidAgency before anything is written
    current = (await read_agencies(settings)).agencies
    changed = [a for a in wanted if current.get(a.id) != a]
    if changed:
        await load_agencies(settings, source)  # writes all (whole records) and decision topics
    names = {a.id for a in changed}
    return [
        f"{a.id}: {'loaded' if a.id in names else 'unchanged'} ({len(a.keys)} keys)" for a in wanted
    ]


async def _channels(settings: Settings, limits: Mapping[str, float | None]) -> list[str]:
    from streams.fanout.limits import lift_limit, read_limits, set_limit

    current = await read_limits(settings)
    lines = []
    for channel, rate in limits.items():
        if current.get(channel) == rate:
            lines.append(f"{channel}: unchanged ({_rate(rate)})")
        elif rate is None:
            await lift_limit(settings, channel)
            lines.append(f"{channel}: lifted (unlimited)")
        else:
            await set_limit(settings, channel, rate)
            lines.append(f"{channel}: set to {_rate(rate)}")
    return lines


def _rate(rate: float | None) -> str:
    return "unlimited" if rate is None else f"{rate:g} tasks/s"
