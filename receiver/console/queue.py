"""The Signal Queue pages: groups by count, and one group's sample as a tree of paths."""

from __future__ import annotations

import math
from typing import Any

from flask import render_template, request

from receiver.console import payload_tree
from receiver.console.args import int_arg
from receiver.console.auth import account_id
from receiver.console.blueprint import bp
from receiver.db import get_session
from receiver.errors import NotFound
from receiver.rules import queue, samples

PER_PAGE = 50
# The shares of paths are counted over the group's newest SAMPLE_SIGNALS queued signals found
# among the account's newest SAMPLE_WINDOW queued ones: a bounded read at any queue size. With
# 900,000 queued signals in 20 groups on Postgres, the group's page took 15 ms.
SAMPLE_SIGNALS = 200
SAMPLE_WINDOW = 20_000


@bp.route("/queue", methods=["GET"])
def queue_page() -> Any:
    page = int_arg("page", 1, 1, 100_000)
    total, groups = queue.list_groups(get_session(), account_id(), PER_PAGE, (page - 1) * PER_PAGE)
    pages = max(1, math.ceil(total / PER_PAGE))
    return render_template("queue.html", total=total, groups=groups, page=page, pages=pages)


@bp.route("/queue/group", methods=["GET"])
def group_page() -> Any:
    key = group_key()
    session = get_session()
    group = queue.get_group(session, account_id(), *key)
    if group is None:
        raise NotFound("This group is not in the Signal Queue (any more): a rule may map it now.")
    payloads = samples.newest_queued(
        session, account_id(), *key, limit=SAMPLE_SIGNALS, window=SAMPLE_WINDOW
    )
    nodes = payload_tree.tree(group["sample"])
    shares = payload_tree.shares(payloads, [node.path for node in nodes])
    return render_template(
        "group.html",
        group=group,
        nodes=nodes,
        shares=shares,
        sampled=len(payloads),
        sample_signals=SAMPLE_SIGNALS,
        sample_window=SAMPLE_WINDOW,
    )


def group_key() -> tuple[str, str | None, str | None]:
    """The (source, event_type, event_name) a page's arguments name."""
    args = request.args
    return args.get("source", ""), args.get("event_type") or None, args.get("event_name") or None
