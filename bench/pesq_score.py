#!/usr/bin/env python3
"""Wideband PESQ (ITU-T P.862.2) of degraded recordings against their references.

Usage: pesq_score.py REF DEG [REF DEG ...]

Both files of a pair must be 16 kHz mono WAV, already time-aligned to within the
modest delay PESQ itself can follow. Prints one MOS-LQO per pair, one per line, in
order; "nan" (with the reason on stderr) for a pair PESQ cannot score, for example when
it finds no speech in the degraded file.

Scoring is the PyPI package `pesq` (a C extension built from the ITU-T reference code):
    pip install pesq numpy soundfile
"""
import sys

try:
    import numpy as np
    import soundfile as sf
    from pesq import pesq
except ImportError as e:  # pragma: no cover - depends on the machine
    print(f"pesq_score.py: {e}; run: pip install pesq numpy soundfile", file=sys.stderr)
    sys.exit(3)

RATE = 16000


def load(path):
    samples, rate = sf.read(path, dtype="float64", always_2d=True)
    if rate != RATE:
        raise ValueError(f"{path}: {rate} Hz, PESQ wideband needs {RATE} Hz")
    return np.mean(samples, axis=1)


def score(ref_path, deg_path):
    ref, deg = load(ref_path), load(deg_path)
    if not np.any(deg):
        raise ValueError(f"{deg_path}: silent")
    return pesq(RATE, ref, deg, "wb")


def main(args):
    if not args or len(args) % 2:
        print(__doc__.strip().splitlines()[2], file=sys.stderr)
        return 2
    for ref_path, deg_path in zip(args[0::2], args[1::2]):
        try:
            mos = score(ref_path, deg_path)
        except Exception as e:  # noqa: BLE001 - report and go on with the next pair
            print(f"pesq_score.py: {ref_path} vs {deg_path}: {e}", file=sys.stderr)
            mos = float("nan")
        print(f"{mos:.4f}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
