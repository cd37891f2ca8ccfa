#!/usr/bin/env python3
"""Synthetic event logs with a known structure, for checking that defaults tuned on
MovieLens-100k hold on data shaped differently (the CSV `central-sync eval --events` reads).

  markov: each item has three successors, taken with probabilities 0.6 / 0.25 / 0.15; with
          probability 1 - P (P = --markov, default 0.5) a step jumps to a popular item instead.
          The last-item Markov baseline is close to the best possible list here.
  topics: 100 topics of 20 items; each user follows 1-3 topics, items in random order
          (Zipf within a topic), 20% of steps a popular item. Co-occurrence (item-kNN) is the
          strong baseline; order carries nothing.

3,000 users (--users), sessions of about 25 events (--length, the mean; at least 3), 30 s to
1 h apart, users starting anywhere in 200 days. Deterministic for a seed:

  python3 scripts/synthetic-log.py markov --seed 1 > /tmp/markov.csv
  central-sync eval --events /tmp/markov.csv --db /tmp/markov.sqlite
"""
import argparse
import bisect
import random
import sys

T0, SPAN_S = 1_600_000_000, 200 * 86400


def sampler(weights, rng):
    """Draws an index with probability proportional to its weight."""
    cum, total = [], 0.0
    for w in weights:
        total += w
        cum.append(total)
    return lambda: bisect.bisect(cum, rng.random() * total)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("kind", choices=["markov", "topics"])
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--markov", type=float, default=0.5, help="markov: probability of a chain step")
    ap.add_argument("--items", type=int, default=2000, help="markov: catalog size")
    ap.add_argument("--users", type=int, default=3000)
    ap.add_argument("--length", type=float, default=25, help="mean events per user")
    args = ap.parse_args()
    random.seed(args.seed)
    out = sys.stdout
    out.write("user,item,ts,type,value\n")
    if args.kind == "markov":
        n_items = args.items
        items = list(range(n_items))
        random.shuffle(items)
        pick = sampler([1.0 / (i + 1) ** 0.9 for i in range(n_items)], random)
        popular = lambda: items[pick()]
        succ = {i: [random.randrange(n_items) for _ in range(3)] for i in range(n_items)}
        for u in range(args.users):
            length = max(3, int(random.expovariate(1 / args.length)))
            t = T0 + random.randrange(SPAN_S)
            cur = popular()
            for _ in range(length):
                out.write(f"u{u},i{cur},{t},view,1\n")
                t += random.randrange(30, 3600)
                if random.random() < args.markov:
                    r = random.random()
                    cur = succ[cur][0 if r < 0.6 else (1 if r < 0.85 else 2)]
                else:
                    cur = popular()
    else:
        topics, per = 100, 20
        n_items = topics * per
        items = list(range(n_items))
        random.shuffle(items)
        pick = sampler([1.0 / (i + 1) ** 0.9 for i in range(n_items)], random)
        within = sampler([1.0 / (i + 1) ** 0.7 for i in range(per)], random)
        for u in range(args.users):
            length = max(3, int(random.expovariate(1 / args.length)))
            mine = [random.randrange(topics) for _ in range(random.randint(1, 3))]
            t = T0 + random.randrange(SPAN_S)
            for _ in range(length):
                item = items[pick()] if random.random() < 0.2 else random.choice(mine) * per + within()
                out.write(f"u{u},i{item},{t},view,1\n")
                t += random.randrange(30, 3600)


if __name__ == "__main__":
    main()
