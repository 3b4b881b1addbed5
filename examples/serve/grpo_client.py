#!/usr/bin/env python3
"""A trainer's view of `forager serve`, with the Python standard library only.

Submits a GRPO-style group (every task x SAMPLES episodes), follows it through the server-sent
events until it is done, reads the trajectories and computes the group-relative advantages of
GRPO: per task, A_i = (r_i - mean(r)) / (std(r) + eps), std the population standard deviation.
Then reads the token records (ids, logprobs, loss mask) a trainer would compute its loss on.

    python3 examples/serve/grpo_client.py --url http://127.0.0.1:8090 --task ID [--task ID ...] \
        --samples 4 [--policy oracle | --model-url URL [--model NAME]] [--token T]

Prints one JSON object: the group id, per task the rewards and advantages, and per trajectory
the number of tokens and model tokens of its token record.
"""
import argparse
import json
import math
import sys
import urllib.request

EPS = 1e-6


def request(url, method="GET", body=None, token=None):
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(url, data=data, method=method)
    req.add_header("content-type", "application/json")
    if token:
        req.add_header("authorization", "Bearer " + token)
    return urllib.request.urlopen(req, timeout=600)


def events(url, token=None):
    """Yield (event, data) of a text/event-stream response until it ends."""
    with request(url, token=token) as resp:
        event, data = None, []
        for raw in resp:
            line = raw.decode("utf-8").rstrip("\n")
            if line.startswith("event: "):
                event = line[len("event: "):]
            elif line.startswith("data: "):
                data.append(line[len("data: "):])
            elif line == "" and event is not None:
                yield event, json.loads("\n".join(data))
                event, data = None, []


def grpo_advantages(rewards):
    """Group-relative advantages: (r - mean) / (std + eps) over one task's samples."""
    n = len(rewards)
    if n == 0:
        return []
    mean = sum(rewards) / n
    std = math.sqrt(sum((r - mean) ** 2 for r in rewards) / n)
    return [(r - mean) / (std + EPS) for r in rewards]


def main(argv):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--url", required=True)
    p.add_argument("--task", action="append", required=True)
    p.add_argument("--samples", type=int, default=4)
    p.add_argument("--policy", default="oracle", choices=["oracle", "http"])
    p.add_argument("--model-url")
    p.add_argument("--model")
    p.add_argument("--max-turns", type=int)
    p.add_argument("--token")
    a = p.parse_args(argv)

    policy = {"kind": "oracle"}
    if a.policy == "http" or a.model_url:
        endpoint = {"url": a.model_url}
        if a.model:
            endpoint["model"] = a.model
        policy = {"kind": "http", "endpoints": [endpoint]}
    body = {"tasks": a.task, "samples": a.samples, "policy": policy}
    if a.max_turns:
        body["maxTurns"] = a.max_turns
    with request(a.url + "/v1/rollouts", "POST", body, a.token) as resp:
        group = json.load(resp)
    gid = group["id"]

    seen = 0
    for event, data in events(a.url + "/v1/rollouts/" + gid + "/events", a.token):
        if event == "trajectory":
            seen += 1
            print("trajectory %d/%d: %s reward %s" % (seen, group["expected"], data["item"]["taskId"], data["item"]["reward"]), file=sys.stderr)
        elif event == "done":
            break

    with request(a.url + "/v1/rollouts/" + gid, token=a.token) as resp:
        result = json.load(resp)
    with request(a.url + "/v1/rollouts/" + gid + "/tokens", token=a.token) as resp:
        records = [json.loads(line) for line in resp.read().decode().splitlines() if line.strip()]
    by_id = {r["id"]: r for r in records}

    out = {"id": gid, "status": result["status"], "events": seen, "tasks": []}
    for g in result["groups"]:
        rewards = [t["reward"] for t in g["trajectories"]]
        adv = grpo_advantages(rewards)
        trajs = []
        for t, adv_i in zip(g["trajectories"], adv):
            rec = by_id.get(t["trajectory"]["id"], {})
            trajs.append({
                "sample": t["sample"],
                "reward": t["reward"],
                "advantage": adv_i,
                "resolved": t["resolved"],
                "exact": rec.get("exact", False),
                "tokens": len(rec.get("inputIds", [])),
                "modelTokens": sum(rec.get("lossMask", [])),
            })
        out["tasks"].append({"taskId": g["taskId"], "rewards": rewards, "advantages": adv, "trajectories": trajs})
    print(json.dumps(out))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
