"""`mlsync state list | show ADDRESS | rm ADDRESS... | mv --to-stack OTHER ADDRESS...`: read or edit a
stack's state."""

from __future__ import annotations

from typing import Optional, TextIO

from mlsync.commands.output import EXIT_OK, plural


def state(action: str, args: list[str], options, out: TextIO, *, stack: str, state_file: Optional[str] = None,
          to_stack: Optional[str] = None) -> int:
    """`mlsync state list | show ADDRESS | rm ADDRESS... | mv --to-stack OTHER ADDRESS...`."""
    from mlsync.commands import common
    from mlsync.edge import statestore

    cluster = None if state_file else common.connect(options)
    store = common.state_store(cluster, state_file)
    if action == "list":
        out.write(statestore.state_list_text(store, stack) + "\n")
    elif action == "show":
        out.write(statestore.state_show_text(store, stack, args[0]) + "\n")
    elif action == "mv":
        statestore.state_mv(store, stack, to_stack, args)
        print(f"Moved {plural(len(args), 'address', 'addresses')} from stack {stack!r} to stack {to_stack!r} "
              "(the objects themselves are untouched; declare them in that stack's file).", file=out)
    elif action == "rm":
        statestore.state_rm(store, stack, args)
        print(f"Removed {plural(len(args), 'address', 'addresses')} from the state of stack {stack!r} "
              "(the objects themselves are untouched).", file=out)
    return EXIT_OK
