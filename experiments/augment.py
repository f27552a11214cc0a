"""A simple augmented copy of a training file, for run.py --augment (issue 30): each row copied
COPIES times, each copy's texts with words dropped (each with probability --drop, at least one word
kept) and neighbouring words swapped (--swaps per text), the other columns (the label) as they were.
Seeded: the same flags write the same file. The format (TSV, CSV or JSON Lines) is the input's,
told by the file suffix as run.py tells it; the input needs a header (JSON Lines: keys).

Far simpler than TinyBERT's augmentation (which swaps words for BERT's and GloVe's neighbours): it
is meant to show what added rows do through run.py, not to be a strong augmenter.

    python experiments/augment.py runs/own/cola/data/train.csv runs/own/cola/data/train_aug.csv \\
        --text-columns text --copies 4 --seed 0
"""
import argparse
import csv
import json
import random
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from kd_ref.data.rows import file_format, read_table  # noqa: E402
from kd_ref.plumbing.errors import KdError  # noqa: E402


def noisy(text: str, rng: random.Random, drop: float, swaps: int) -> str:
    words = text.split()
    kept = [w for w in words if rng.random() >= drop] or words[:1]
    for _ in range(swaps if len(kept) > 1 else 0):
        i = rng.randrange(len(kept) - 1)
        kept[i], kept[i + 1] = kept[i + 1], kept[i]
    return " ".join(kept)


def augment(rows: list[dict], columns: list[str], copies: int, seed: int, drop: float, swaps: int) -> list[dict]:
    rng = random.Random(seed)
    return [{**row, **{c: noisy(row[c], rng, drop, swaps) for c in columns}} for row in rows for _ in range(copies)]


def write(path: Path, names: list[str], rows: list[dict]) -> None:
    fmt = file_format(path)
    with open(path, "w", encoding="utf-8", newline="") as f:
        if fmt == "jsonl":
            f.writelines(json.dumps(row, ensure_ascii=False) + "\n" for row in rows)
        elif fmt == "csv":
            writer = csv.writer(f)
            writer.writerow(names)
            writer.writerows([row[n] for n in names] for row in rows)
        else:
            f.writelines("\t".join(row[n] for n in names) + "\n" for row in [dict(zip(names, names))] + rows)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("src", type=Path, help="the training file (.tsv, .csv or .jsonl)")
    p.add_argument("dst", type=Path, help="the augmented rows, in the same format")
    p.add_argument("--text-columns", required=True, help="the column(s) to change, comma-separated")
    p.add_argument("--copies", type=int, default=4, help="augmented rows per original row")
    p.add_argument("--drop", type=float, default=0.1, help="probability that a word is dropped")
    p.add_argument("--swaps", type=int, default=1, help="neighbouring words swapped per text")
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args()
    try:
        if file_format(args.src) != file_format(args.dst):
            raise KdError(f"{args.dst}: write it in the format of {args.src} (run.py reads both alike)")
        table = read_table(args.src)
        columns = [c.strip() for c in args.text_columns.split(",")]
        for line_no, row in table.rows:
            for c in columns:
                if not isinstance(row.get(c), str):
                    raise KdError(f"{args.src}:{line_no}: no text in column {c!r}")
        rows = augment([row for _, row in table.rows], columns, args.copies, args.seed, args.drop, args.swaps)
        names = table.names or list(dict.fromkeys(k for row in rows for k in row))
        write(args.dst, names, rows)
    except KdError as e:
        sys.exit(f"error: {e}")
    print(f"{args.dst}: {len(rows)} rows, {args.copies} per row of {args.src}")


if __name__ == "__main__":
    main()
