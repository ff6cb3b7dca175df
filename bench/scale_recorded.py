"""A recorded log made as long as the bench needs: copies of it one after the other, each copy's
times moved past the last one's, as if the recording had gone on.

    python bench/scale_recorded.py RECORDED.log MB [OUT]

RECORDED.log is a real log (`bench/record_rabbit_churn.py` writes one, with its truth file beside
it); OUT (default: RECORDED-<MB>mb.log) gets OUT.truth.json with the anchor of the recording's truth
file and ``injected`` multiplied by the copies made, so `bench/bench_logs.py --recorded` runs it
against `grep -c`. Only the leading ISO timestamp of each line is moved (RabbitMQ 3.9+'s layout);
lines without one are copied as they are.
"""

from __future__ import annotations

import json
import re
import sys
from datetime import datetime, timedelta
from pathlib import Path

STAMP = re.compile(rb"^(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d{6})", re.M)
FORMAT = "%Y-%m-%d %H:%M:%S.%f"


def main(argv: list[str]) -> int:
    if len(argv) < 2:
        print(__doc__.strip().splitlines()[2].strip(), file=sys.stderr)
        return 2
    source, size_mb = Path(argv[0]), int(argv[1])
    out = Path(argv[2]) if len(argv) > 2 else source.with_name(f"{source.stem}-{size_mb}mb.log")
    data = source.read_bytes()
    stamps = [datetime.strptime(m.decode(), FORMAT) for m in STAMP.findall(data)]
    if not stamps:
        print(f"{source}: no line starts with an ISO timestamp", file=sys.stderr)
        return 2
    span = stamps[-1] - stamps[0] + timedelta(seconds=1)
    target, written, copies = size_mb << 20, 0, 0
    with out.open("wb") as sink:
        while written < target:
            shift = span * copies

            def move(m: re.Match[bytes], shift: timedelta = shift) -> bytes:
                return (datetime.strptime(m.group(1).decode(), FORMAT) + shift).strftime(FORMAT).encode()

            piece = STAMP.sub(move, data) if copies else data
            sink.write(piece if piece.endswith(b"\n") else piece + b"\n")
            written += len(piece)
            copies += 1
    truth_path = source.with_name(source.name + ".truth.json")
    truth = json.loads(truth_path.read_text()) if truth_path.exists() else {"anchor": "", "injected": 0}
    truth.update({"shape": f"{truth.get('shape', source.name)} x{copies}", "injected": truth["injected"] * copies,
                  "files": [str(out)], "gz": False, "copies": copies, "size_mb": size_mb})
    out.with_name(out.name + ".truth.json").write_text(json.dumps(truth, indent=1))
    print(json.dumps(truth))
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
