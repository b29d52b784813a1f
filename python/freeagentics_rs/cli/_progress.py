"""A live progress bar on stderr: tqdm when it is installed, else one plain line."""

from __future__ import annotations

import sys
from typing import Any


class Progress:
    def __init__(self, total: int, label: str) -> None:
        self.total, self.label = total, label
        self._bar: Any = None
        self._done = 0

    def __enter__(self) -> Progress:
        try:
            from tqdm import tqdm
        except ImportError:
            print(f"{self.label} ...", file=sys.stderr, flush=True)
        else:
            self._bar = tqdm(
                total=self.total,
                desc=self.label,
                unit=" agent-steps",
                leave=False,
                file=sys.stderr,
                dynamic_ncols=True,
                mininterval=0.2,
            )
        return self

    def advance(self, steps: int) -> None:
        self._done += steps
        if self._bar is not None:
            self._bar.update(steps)

    def __exit__(self, *exc: object) -> None:
        if self._bar is not None:
            self._bar.close()
