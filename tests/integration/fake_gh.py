"""A stand-in for the GitHub CLI, for the shell steps of examples/ci/mlsync.yml (GitHub is out of reach here).

It understands exactly the `gh` calls that workflow makes and keeps GitHub's side (comments, issues,
labels, pull requests, workflow runs) in the JSON file named by FAKE_GH_STATE, logging every call
under "calls". Like the real CLI it needs GH_TOKEN, prints `--jq` results raw (through the real
`jq -r`), refuses an issue label that does not exist, and exits 1 on anything it does not know, so
a step that calls gh differently fails its test instead of passing unseen.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from typing import Any

BOT = {"login": "github-actions[bot]"}


def fail(message: str) -> None:
    print(f"fake gh: {message}", file=sys.stderr)
    sys.exit(1)


def options(args: list[str], flags: set[str]) -> tuple[list[str], dict[str, list[str]]]:
    """Split args into positionals and {option: [values]}; options in `flags` take no value."""
    positional: list[str] = []
    opts: dict[str, list[str]] = {}
    i = 0
    while i < len(args):
        arg = args[i]
        if arg.startswith("-"):
            if arg in flags:
                opts.setdefault(arg, []).append("")
            else:
                if i + 1 >= len(args):
                    fail(f"{arg} needs a value")
                opts.setdefault(arg, []).append(args[i + 1])
                i += 1
        else:
            positional.append(arg)
        i += 1
    return positional, opts


def one(opts: dict[str, list[str]], *names: str, default: Any = None) -> Any:
    for name in names:
        if name in opts:
            return opts[name][-1]
    return default


def emit(data: Any, jq: str | None) -> None:
    text = json.dumps(data)
    if jq is None:
        print(text)
        return
    out = subprocess.run(["jq", "-r", jq], input=text, capture_output=True, text=True)
    if out.returncode != 0:
        fail(f"--jq {jq!r}: {out.stderr.strip()}")
    sys.stdout.write(out.stdout)


def body_from(opts: dict[str, list[str]]) -> str:
    if "--body-file" in opts:
        with open(opts["--body-file"][-1], encoding="utf-8") as f:
            return f.read()
    if "--body" in opts:
        return opts["--body"][-1]
    fail("no --body or --body-file")
    return ""


def api(state: dict, args: list[str]) -> None:
    pos, opts = options(args, {"--paginate"})
    if len(pos) != 1:
        fail(f"api needs one path, got {pos}")
    method = one(opts, "--method", "-X", default="GET").upper()
    fields = {}
    for spec in opts.get("-F", []) + opts.get("--field", []):
        key, _, value = spec.partition("=")
        if value.startswith("@"):
            with open(value[1:], encoding="utf-8") as f:
                value = f.read()
        fields[key] = value
    repo = re.escape(os.environ["GITHUB_REPOSITORY"])
    path = pos[0]
    jq = one(opts, "--jq", "-q")
    if m := re.fullmatch(rf"repos/{repo}/issues/(\d+)/comments", path):
        number = int(m.group(1))
        if method == "GET":
            return emit([c for c in state["comments"] if c["issue"] == number], jq)
        if method == "POST":
            comment = {"id": 1000 + len(state["comments"]), "issue": number, "user": BOT, "body": fields["body"]}
            state["comments"].append(comment)
            return emit(comment, jq)
    if (m := re.fullmatch(rf"repos/{repo}/issues/comments/(\d+)", path)) and method == "PATCH":
        comment = next((c for c in state["comments"] if c["id"] == int(m.group(1))), None)
        if comment is None:
            fail(f"HTTP 404: no comment {m.group(1)}")
        comment["body"] = fields["body"]
        return emit(comment, jq)
    if (m := re.fullmatch(rf"repos/{repo}/commits/(\w+)/pulls", path)) and method == "GET":
        return emit(state["commit_pulls"].get(m.group(1), []), jq)
    if (m := re.fullmatch(rf"repos/{repo}/pulls/(\d+)", path)) and method == "GET":
        if m.group(1) not in state["pulls"]:
            fail(f"HTTP 404: no pull request {m.group(1)}")
        return emit(state["pulls"][m.group(1)], jq)
    fail(f"unsupported api call {method} {path}")


def run_list(state: dict, args: list[str]) -> None:
    _, opts = options(args, set())
    runs = [r for r in state["runs"]
            if r["workflow"] == one(opts, "--workflow", "-w", default=r["workflow"])
            and r["event"] == one(opts, "--event", "-e", default=r["event"])
            and r["headSha"] == one(opts, "--commit", "-c", default=r["headSha"])
            and r["conclusion"] == one(opts, "--status", "-s", default=r["conclusion"])]
    runs.sort(key=lambda r: r["databaseId"], reverse=True)          # newest first, like gh
    runs = runs[: int(one(opts, "--limit", "-L", default="20"))]
    fields = one(opts, "--json", default="databaseId").split(",")
    emit([{k: r[k] for k in fields} for r in runs], one(opts, "--jq", "-q"))


def issue(state: dict, sub: str, args: list[str]) -> None:
    pos, opts = options(args, set())
    if sub == "list":
        label, wanted = one(opts, "--label", "-l"), one(opts, "--state", "-s", default="open")
        found = [i for i in state["issues"] if (label is None or label in i["labels"]) and i["state"] == wanted]
        found = found[: int(one(opts, "--limit", "-L", default="30"))]
        fields = one(opts, "--json", default="number").split(",")
        return emit([{k: i[k] for k in fields} for i in found], one(opts, "--jq", "-q"))
    if sub == "create":
        labels = opts.get("--label", []) + opts.get("-l", [])
        for label in labels:
            if label not in state["labels"]:
                fail(f"could not add label: '{label}' not found")
        number = 100 + len(state["issues"])
        state["issues"].append({"number": number, "title": one(opts, "--title", "-t"), "labels": labels,
                                "state": "open", "body": body_from(opts), "comments": []})
        print(f"https://github.com/{os.environ['GITHUB_REPOSITORY']}/issues/{number}")
        return None
    target = next((i for i in state["issues"] if pos and str(i["number"]) == pos[0]), None)
    if target is None:
        fail(f"issue {pos} not found")
    if sub == "edit":
        target["body"] = body_from(opts)
    elif sub == "close":
        target["state"] = "closed"
        if "--comment" in opts or "-c" in opts:
            target["comments"].append(one(opts, "--comment", "-c"))
    else:
        fail(f"unsupported: issue {sub}")
    return None


def main(argv: list[str]) -> None:
    if not os.environ.get("GH_TOKEN"):
        fail("set the GH_TOKEN environment variable")       # what the real gh says in Actions, roughly
    path = os.environ["FAKE_GH_STATE"]
    with open(path, encoding="utf-8") as f:
        state = json.load(f)
    state["calls"].append(argv)
    try:
        if argv[:1] == ["api"]:
            api(state, argv[1:])
        elif argv[:2] == ["run", "list"]:
            run_list(state, argv[2:])
        elif argv[:2] == ["label", "create"]:
            pos, _ = options(argv[2:], {"--force", "-f"})
            state["labels"] = sorted(set(state["labels"]) | {pos[0]})
        elif argv[:1] == ["issue"] and len(argv) > 1:
            issue(state, argv[1], argv[2:])
        elif argv[:2] == ["pr", "comment"]:
            pos, opts = options(argv[2:], set())
            state["comments"].append({"id": 1000 + len(state["comments"]), "issue": int(pos[0]), "user": BOT,
                                      "body": body_from(opts)})
        else:
            fail(f"unsupported command: gh {' '.join(argv)}")
    finally:
        with open(path, "w", encoding="utf-8") as f:
            json.dump(state, f, indent=1)


if __name__ == "__main__":
    main(sys.argv[1:])
