#!/usr/bin/env python3
"""What the tensorboard package reads from cpeft's event file (issue 18, item 3).

    tests/reference/.venv/bin/python tests/reference/read_tensorboard_fixture.py

tests/fixtures/tensorboard/events.out.tfevents.fixture is written by cpeft's writer from fixed scalars
(CPEFT_WRITE_TB_FIXTURE=PATH build/tests/unit/test_tensorboard). This reads it with tensorboard's
EventAccumulator (the reader TensorBoard itself uses) and writes what it got, every scalar's tag,
step, wall time and value, to tests/fixtures/tensorboard/scalars.json; test_tensorboard.c checks that
these are the scalars written and that the writer still produces the same bytes.
"""
import json
import os

from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
from tensorboard.backend.event_processing import event_file_loader

HERE = os.path.dirname(os.path.abspath(__file__))
DIR = os.path.join(os.path.dirname(HERE), "fixtures", "tensorboard")
path = os.path.join(DIR, "events.out.tfevents.fixture")
ea = EventAccumulator(path)
ea.Reload()
scalars = {tag: [{"step": e.step, "value": e.value, "wall_time": e.wall_time} for e in ea.Scalars(tag)]
           for tag in ea.Tags()["scalars"]}
first = next(iter(event_file_loader.EventFileLoader(path).Load()))
out = {"file_version": first.file_version, "scalars": scalars}
with open(os.path.join(DIR, "scalars.json"), "w", encoding="utf-8", newline="\n") as f:
    f.write(json.dumps(out, indent=1, sort_keys=True) + "\n")
print(f"{sum(len(v) for v in scalars.values())} scalars under {len(scalars)} tags")
