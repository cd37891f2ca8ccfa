#!/usr/bin/env python3
"""Synthetic event logs with a known structure, for checking that defaults tuned on
MovieLens-100k hold on data shaped differently (the CSV `central-sync eval --events` reads).

  markov: each item has three successors, taken with probabilities 0.6 / 0.25 / 0.15; with
          probability 1 - P (P = --markov, default 0.5) a step jumps to a popular item instead.
          The last-item Markov baseline is close to the best possible list here.
  topics: topics of 20 items (100 of them by default, --items / 20); each user follows 1-3 topics, items in random order
          (Zipf within a topic), 20% of steps a popular item. Co-occurrence (item-kNN) is the
          strong baseline; order carries nothing.
  trend:  3,000 items released over the 200 days, each one's appeal decaying with a 7-day
          time constant after its release (news, new products). Half of the steps follow the
          day's trend, half the user's 1-3 topics weighted by the same trend. Trending is the
          strong anonymous baseline; a good session list is trending within the session's topics.
  context: 2,000 items in 100 topics; every user has a device (mobile, desktop, tablet) and one
          of five cities; 40% of the steps pick an item by what that device and city favour,
          the rest follow the user's topics. Only a list that reads the request's context can
          beat popularity for anonymous visitors.

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
    ap.add_argument("kind", choices=["markov", "topics", "trend", "context"])
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--markov", type=float, default=0.5, help="markov: probability of a chain step")
    ap.add_argument("--items", type=int, default=2000, help="markov, topics: catalog size")
    ap.add_argument("--users", type=int, default=3000)
    ap.add_argument("--length", type=float, default=25, help="mean events per user")
    args = ap.parse_args()
    random.seed(args.seed)
    out = sys.stdout
    header = "user,item,ts,type,value" + (",lat,lon,device,tz_offset_min" if args.kind == "context" else "")
    out.write(header + "\n")
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
    elif args.kind == "trend":
        trend_log(args, out)
    elif args.kind == "context":
        context_log(args, out)
    else:
        per = 20
        topics = max(1, args.items // per)
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


def trend_log(args, out):
    n_items, topics, tau = 3000, 100, 7 * 86400
    release = [T0 - 30 * 86400 + random.randrange(SPAN_S + 30 * 86400) for _ in range(n_items)]
    appeal = [random.paretovariate(1.2) for _ in range(n_items)]
    topic_of = [random.randrange(topics) for _ in range(n_items)]
    for u in range(args.users):
        length = max(3, int(random.expovariate(1 / args.length)))
        mine = set(random.randrange(topics) for _ in range(random.randint(1, 3)))
        t = T0 + random.randrange(SPAN_S)
        # A session spans hours, the decay weeks: one weight vector per user is close enough.
        weights = [appeal[i] * 2.718281828 ** ((release[i] - t) / tau) if release[i] <= t else 0.0
                   for i in range(n_items)]
        everyone = sampler(weights, random)
        ids = [i for i in range(n_items) if topic_of[i] in mine]
        own = sampler([weights[i] for i in ids], random)
        for _ in range(length):
            if random.random() < 0.5 or not any(weights[i] for i in ids):
                item = everyone()
            else:
                item = ids[own()]
            out.write(f"u{u},i{item},{t},view,1\n")
            t += random.randrange(30, 3600)


# Five cities (lat, lon, tz offset in minutes) and three devices.
CITIES = [(40.71, -74.01, -300), (51.51, -0.13, 0), (35.68, 139.69, 540),
          (-33.87, 151.21, 600), (19.43, -99.13, -360)]
DEVICES = ["mobile", "desktop", "tablet"]


def context_log(args, out):
    topics, per = 100, 20
    n_items = topics * per
    within = sampler([1.0 / (i + 1) ** 0.7 for i in range(per)], random)
    # Each (device, city) pair favours its own Zipf-ordered slice of the catalog.
    favoured = {}
    for d in range(len(DEVICES)):
        for c in range(len(CITIES)):
            order = random.sample(range(n_items), 200)
            pick = sampler([1.0 / (i + 1) ** 0.9 for i in range(len(order))], random)
            favoured[(d, c)] = (order, pick)
    for u in range(args.users):
        length = max(3, int(random.expovariate(1 / args.length)))
        mine = [random.randrange(topics) for _ in range(random.randint(1, 3))]
        d, c = random.randrange(len(DEVICES)), random.randrange(len(CITIES))
        lat, lon, tz = CITIES[c]
        order, pick = favoured[(d, c)]
        t = T0 + random.randrange(SPAN_S)
        for _ in range(length):
            item = order[pick()] if random.random() < 0.4 else random.choice(mine) * per + within()
            out.write(f"u{u},i{item},{t},view,1,{lat},{lon},{DEVICES[d]},{tz}\n")
            t += random.randrange(30, 3600)


if __name__ == "__main__":
    main()
