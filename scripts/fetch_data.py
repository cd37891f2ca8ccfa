#!/usr/bin/env python3
"""Fetch MovieLens-100k (recbole 1.2.1 wheel) and the Open Bandit Dataset's small sample (obp 0.4.1
wheel) from PyPI and convert them to edgerec's formats.

Writes into data/ml-100k/ (git-ignored; the MovieLens terms forbid redistribution):
  events.csv  the event CSV of DESIGN.md: user,item,ts,type,value (type=view, value=rating),
              rows in the original file order so a stable sort by ts keeps ties as the
              evaluation protocol (shared/DATA.md) requires
  items.csv   id,title,year,genres (genres joined with '|')
  SOURCE.md   where the data came from and its terms

Writes into data/obd/ (git-ignored):
  bts.csv, random.csv  the "all" campaign's logs under Bernoulli Thompson sampling and under the
              uniform-random policy, as exposure logs for `central-sync ope`:
              ts,user,item,position,reward,propensity (position 0-based, reward = click)
  SOURCE.md   where the data came from and its terms

Idempotent: does nothing when the outputs exist with the expected checksums. Every download and
output is checked against a pinned SHA-256, so a changed upstream file is an error, not a silent
change in every figure we report.
"""
import csv
import datetime
import glob
import hashlib
import io
import os
import subprocess
import sys
import tempfile
import zipfile

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
OUT = os.path.join(ROOT, "data", "ml-100k")
WHEEL_SHA256 = "9c9948202011f37eb0a7c6768129313f00d6403ad221ec940d5e2d5d5f33a407"
INNER = "recbole/dataset_example/ml-100k/"
EXPECTED = {
    "events.csv": "92255c328fb2ca8252310d43e1c5aeb9add5b57c613ae66c76b7dabb5cb24ba2",
    "items.csv": "3dfd4fe3addf9b2858ef7e93423e4ded77beb0ec9745287437d004f832bd6755",
}
SOURCE_MD = """# MovieLens-100k

Source: the recbole==1.2.1 wheel on PyPI (recbole/dataset_example/ml-100k/), converted by
scripts/fetch_data.py. Original data: GroupLens Research, University of Minnesota.
F. Maxwell Harper and Joseph A. Konstan. 2015. The MovieLens Datasets: History and Context.
ACM Transactions on Interactive Intelligent Systems 5, 4, Article 19.
Terms: GroupLens research use terms; the data may not be redistributed, so it is never committed.
"""


def sha256(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def up_to_date(out, expected):
    return all(
        os.path.exists(os.path.join(out, name)) and sha256(os.path.join(out, name)) == digest
        for name, digest in expected.items()
    )


def convert(wheel_path):
    z = zipfile.ZipFile(wheel_path)
    inter = io.TextIOWrapper(z.open(INNER + "ml-100k.inter"), encoding="utf-8")
    items = io.TextIOWrapper(z.open(INNER + "ml-100k.item"), encoding="latin-1")
    os.makedirs(OUT, exist_ok=True)
    with open(os.path.join(OUT, "events.csv.tmp"), "w", newline="") as f:
        w = csv.writer(f, lineterminator="\n")
        w.writerow(["user", "item", "ts", "type", "value"])
        header = next(inter)
        assert header.startswith("user_id:token"), header
        for line in inter:
            user, item, rating, ts = line.rstrip("\n").split("\t")
            w.writerow([user, item, int(float(ts)), "view", int(float(rating))])
    with open(os.path.join(OUT, "items.csv.tmp"), "w", newline="") as f:
        w = csv.writer(f, lineterminator="\n")
        w.writerow(["id", "title", "year", "genres"])
        next(items)
        for line in items:
            parts = line.rstrip("\n").split("\t")
            item_id, title, year, genres = (parts + [""] * 4)[:4]
            w.writerow([item_id, title, year, "|".join(genres.split())])
    for name in EXPECTED:
        os.replace(os.path.join(OUT, name + ".tmp"), os.path.join(OUT, name))
    with open(os.path.join(OUT, "SOURCE.md"), "w") as f:
        f.write(SOURCE_MD)


def fetch_wheel(tmp, requirement, digest):
    """Downloads one wheel from PyPI into tmp and checks its pinned SHA-256."""
    name, version = requirement.split("==")
    print(f"[data] downloading {requirement} wheel from PyPI")
    subprocess.run(
        [sys.executable, "-m", "pip", "download", "--no-deps", "-q", "-d", tmp, requirement],
        check=True,
        stdin=subprocess.DEVNULL,
    )
    wheel = glob.glob(os.path.join(tmp, f"{name}-{version}-*.whl"))[0]
    if sha256(wheel) != digest:
        raise SystemExit(f"[data] ERROR: {wheel} checksum mismatch")
    return wheel


def check_outputs(out, expected):
    for name, digest in expected.items():
        got = sha256(os.path.join(out, name))
        if got != digest:
            raise SystemExit(f"[data] ERROR: {out}/{name} sha256 {got} != expected {digest}")


def fetch_dataset(out, expected, requirement, wheel_digest, convert_wheel):
    """Converts one wheel's data into `out` unless every output is there with its checksum."""
    label = os.path.relpath(out, ROOT)
    if up_to_date(out, expected):
        print(f"[data] {label} up to date")
        return 0
    with tempfile.TemporaryDirectory() as tmp:
        convert_wheel(fetch_wheel(tmp, requirement, wheel_digest))
    check_outputs(out, expected)
    print(f"[data] wrote {label}/{{{','.join(expected)}}} (checksums verified)")
    return 0


OBD_OUT = os.path.join(ROOT, "data", "obd")
OBD_WHEEL_SHA256 = "87dec9caf4283c25ab13036532e0a24566f1c7bdcad1653a8ded43b2f5ef8208"
OBD_INNER = "obp/dataset/obd/{policy}/all/all.csv"
OBD_EXPECTED = {
    "bts.csv": "105510c49403142a8485161e57355b1a46e9ead45624382c200e9be735f46e0d",
    "random.csv": "1f37e9ec9b0f9dab927e91bf1bfe62a3a5228d026a8cb8eb8bf2dd9fd9c17f92",
}
OBD_SOURCE_MD = """# Open Bandit Dataset (small sample)

Source: the obp==0.4.1 wheel on PyPI (obp/dataset/obd/{bts,random}/all/all.csv), converted by
scripts/fetch_data.py into edgerec's exposure-log CSV (ts,user,item,position,reward,propensity;
position 0-based; reward = click; user = the hashed user_feature_0..3 joined).
Original data: ZOZO, Inc. Yuta Saito, Shunsuke Aihara, Megumi Matsutani, Yusuke Narita. 2021.
Open Bandit Dataset and Pipeline: Towards Realistic and Reproducible Off-Policy Evaluation.
NeurIPS Datasets and Benchmarks. Terms: the dataset is licensed CC BY 4.0; it is not committed.
"""


def convert_obd(wheel_path):
    z = zipfile.ZipFile(wheel_path)
    os.makedirs(OBD_OUT, exist_ok=True)
    for policy in ("bts", "random"):
        rows = csv.DictReader(io.TextIOWrapper(z.open(OBD_INNER.format(policy=policy)), encoding="utf-8"))
        tmp = os.path.join(OBD_OUT, policy + ".csv.tmp")
        with open(tmp, "w", newline="") as f:
            w = csv.writer(f, lineterminator="\n")
            w.writerow(["ts", "user", "item", "position", "reward", "propensity"])
            for r in rows:
                ts = datetime.datetime.fromisoformat(r["timestamp"]).timestamp()
                user = "-".join(r[f"user_feature_{k}"][:8] for k in range(4))
                w.writerow([int(ts), user, r["item_id"], int(r["position"]) - 1, r["click"], r["propensity_score"]])
        os.replace(tmp, os.path.join(OBD_OUT, policy + ".csv"))
    with open(os.path.join(OBD_OUT, "SOURCE.md"), "w") as f:
        f.write(OBD_SOURCE_MD)


def main():
    return fetch_dataset(OUT, EXPECTED, "recbole==1.2.1", WHEEL_SHA256, convert) or fetch_dataset(
        OBD_OUT, OBD_EXPECTED, "obp==0.4.1", OBD_WHEEL_SHA256, convert_obd
    )


if __name__ == "__main__":
    sys.exit(main())
