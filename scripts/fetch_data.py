#!/usr/bin/env python3
"""Fetch MovieLens-100k from the recbole 1.2.1 wheel on PyPI and convert it to edgerec's formats.

Writes into data/ml-100k/ (git-ignored; the MovieLens terms forbid redistribution):
  events.csv  the event CSV of DESIGN.md: user,item,ts,type,value (type=view, value=rating),
              rows in the original file order so a stable sort by ts keeps ties as the
              evaluation protocol (shared/DATA.md) requires
  items.csv   id,title,year,genres (genres joined with '|')
  SOURCE.md   where the data came from and its terms

Idempotent: does nothing when the outputs exist with the expected checksums. Every download and
output is checked against a pinned SHA-256, so a changed upstream file is an error, not a silent
change in every figure we report.
"""
import csv
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


def up_to_date():
    return all(
        os.path.exists(os.path.join(OUT, name)) and sha256(os.path.join(OUT, name)) == digest
        for name, digest in EXPECTED.items()
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


def main():
    if up_to_date():
        print("[data] data/ml-100k up to date")
        return 0
    with tempfile.TemporaryDirectory() as tmp:
        print("[data] downloading recbole==1.2.1 wheel from PyPI")
        subprocess.run(
            [sys.executable, "-m", "pip", "download", "--no-deps", "-q", "-d", tmp, "recbole==1.2.1"],
            check=True,
            stdin=subprocess.DEVNULL,
        )
        wheel = glob.glob(os.path.join(tmp, "recbole-1.2.1-*.whl"))[0]
        if sha256(wheel) != WHEEL_SHA256:
            print(f"[data] ERROR: {wheel} checksum mismatch", file=sys.stderr)
            return 1
        convert(wheel)
    for name, digest in EXPECTED.items():
        got = sha256(os.path.join(OUT, name))
        if got != digest:
            print(f"[data] ERROR: data/ml-100k/{name} sha256 {got} != expected {digest}", file=sys.stderr)
            return 1
    print("[data] wrote data/ml-100k/{events.csv,items.csv} (checksums verified)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
