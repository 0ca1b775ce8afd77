"""Reading the prediction log in chunks: the same rows as reading it whole, in order."""

from __future__ import annotations

import pandas as pd

from keel.serving._log import PredictionLog, iter_log, read_log


def test_chunks_hold_every_row_once_in_order(tmp_path):
    url = f"sqlite:///{tmp_path / 'log.db'}"
    log = PredictionLog(url, flush_seconds=60)
    for i in range(40):  # several rows per request, and requests of another version
        version = "2" if i % 7 == 0 else "1"
        log.record(
            f"{i:032x}", {"name": "m", "version": version}, [{"x": i}] * 3, [i] * 3, None, 1.0
        )
        if i % 3 == 0:
            log.feedback(f"{i:032x}", [i, None, i + 1])
    log.close()
    whole = pd.DataFrame(read_log(url, model_name="m", model_version="1"))
    for size in (1, 4, 7, 500):
        parts = list(iter_log(url, "m", "1", chunk=size))
        assert all(len(p) <= size for p in parts)
        merged = pd.concat(parts, ignore_index=True)
        assert merged["request_id"].tolist() == whole["request_id"].tolist()
        assert merged["row"].tolist() == whole["row"].tolist()

        def plain(values):
            return [None if pd.isna(v) else v for v in values]

        assert plain(merged["label"]) == plain(whole["label"])
        assert merged["inputs"].tolist() == whole["inputs"].tolist()
    assert list(iter_log(url, "nobody")) == []
