"""A corpus of documents for retrieval: read, checked, PII-redacted, snapshotted, chunked.

``data:`` of a ``task: retrieval`` project is either a folder of ``.txt``, ``.md``,
``.html`` and ``.pdf`` files (a document per file, its id the path inside the folder)
or a table (CSV, Parquet, JSON lines) with a text column and an id column. Every
document is checked before anything is stored: empty, non-UTF-8, unreadable (a broken
PDF), oversized and duplicate documents are left out and *reported* by name and reason;
a corpus with nothing left is an error. PII is redacted with presidio (the same offline
scanner as tabular PII) before the corpus is snapshotted, chunked or embedded, so
personal data never reaches the index, the package or a served answer.

Chunks are runs of whole sentences of at most ``size`` words, consecutive chunks
sharing about ``overlap`` words. A chunk's id is ``<document id>#<n>``: the same
document and chunking give the same ids on every run, whatever the other documents.
"""

from __future__ import annotations

import hashlib
import html.parser
import io
import re
import unicodedata
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from keel.errors import DataError
from keel.families.retrieval.retrievers import split_sentences

DOCUMENT_SUFFIXES: tuple[str, ...] = (".txt", ".md", ".markdown", ".html", ".htm", ".pdf")
TABLE_SUFFIXES: tuple[str, ...] = (".csv", ".parquet", ".pq", ".jsonl", ".ndjson")
MAX_DOCUMENT_CHARS = 2_000_000
"""A document longer than this (after extraction) is reported and left out."""
MAX_DOCUMENTS = 200_000
COLUMNS = ("doc_id", "title", "text", "source")

_SPACES = re.compile(r"[ \t\r\f\v]+")


@dataclass
class Corpus:
    """The documents kept, what was left out and why, and the PII report."""

    documents: pd.DataFrame = field(repr=False)  # doc_id, title, text, source
    source: str
    skipped: list[dict[str, str]] = field(default_factory=list)
    pii: dict[str, Any] = field(default_factory=dict)

    @property
    def digest(self) -> str:
        """SHA-256 of the documents kept (ids and redacted text), order-independent."""
        digest = hashlib.sha256()
        for doc_id, text in sorted(
            zip(self.documents["doc_id"], self.documents["text"], strict=True)
        ):
            digest.update(f"{len(doc_id)}:{doc_id}{len(text)}:{text}".encode())
        return digest.hexdigest()

    @property
    def n_documents(self) -> int:
        """Documents kept."""
        return len(self.documents)

    def datasheet(self) -> dict[str, Any]:
        """What a card says about the corpus: sizes, kinds, what was left out and why."""
        words = self.documents["text"].str.split().str.len()
        kinds = Counter(Path(str(s)).suffix.lower() or "row" for s in self.documents["source"])
        return {
            "source": self.source,
            "digest": self.digest,
            "documents": self.n_documents,
            "words": int(words.sum()),
            "words_per_document": {
                "median": float(words.median()) if len(words) else 0.0,
                "max": int(words.max()) if len(words) else 0,
            },
            "kinds": dict(kinds),
            "skipped": len(self.skipped),
            "skipped_reasons": dict(Counter(s["reason"].split(":")[0] for s in self.skipped)),
            "skipped_documents": self.skipped[:50],
            "pii": self.pii,
        }


def read_corpus(
    spec: str | Path,
    root: Path,
    text_column: str | None = None,
    id_column: str | None = None,
    title_column: str | None = None,
    max_chars: int = MAX_DOCUMENT_CHARS,
    sections: bool = False,
) -> Corpus:
    """Read a folder of documents or a table of texts; leave out (and report) bad ones.

    ``sections``: every ``## `` section of a Markdown file is a document of its own,
    ``<file>#<slug of the heading>`` (GitHub's anchors), the text before the first one
    ``<file>``: questions are then judged, and answers cited, by section.
    """
    path = Path(spec).expanduser()
    path = path if path.is_absolute() else (root / path).resolve()
    if not path.exists():
        raise DataError(f"data: {spec}: no such folder or file; point data: at the corpus")
    if path.is_dir():
        if text_column or id_column:
            raise DataError(
                f"data: {spec} is a folder (a document per file): remove text_column and"
                " id_column, which name a table's columns"
            )
        rows, skipped = _read_folder(path, max_chars, sections)
    else:
        rows, skipped = _read_table(path, text_column, id_column, title_column, max_chars)
    rows, duplicates = _drop_duplicates(rows)
    skipped += duplicates
    if not rows:
        reasons = "; ".join(f"{s['doc_id']}: {s['reason']}" for s in skipped[:5])
        raise DataError(
            f"data: {spec}: no usable document"
            + (f" ({len(skipped)} left out: {reasons})" if skipped else " (nothing found)")
            + f"; a corpus needs {', '.join(DOCUMENT_SUFFIXES)} files with text, or a table"
            " with a text column"
        )
    frame = pd.DataFrame(rows, columns=list(COLUMNS)).sort_values("doc_id", ignore_index=True)
    return Corpus(frame, str(path), skipped)


def _read_folder(folder: Path, max_chars: int, sections: bool) -> tuple[list[dict], list[dict]]:
    rows: list[dict] = []
    skipped: list[dict] = []
    files = sorted(p for p in folder.rglob("*") if p.is_file() and not _hidden(p, folder))
    for file in files:
        doc_id = file.relative_to(folder).as_posix()
        suffix = file.suffix.lower()
        if suffix not in DOCUMENT_SUFFIXES:
            skipped.append({"doc_id": doc_id, "reason": f"not a document: {suffix or 'no suffix'}"})
            continue
        if len(rows) >= MAX_DOCUMENTS:
            raise DataError(
                f"data: {folder}: more than {MAX_DOCUMENTS} documents; split the corpus"
            )
        if file.stat().st_size > 4 * max_chars:  # never read a huge file whole
            skipped.append({"doc_id": doc_id, "reason": f"oversized: {file.stat().st_size} bytes"})
            continue
        raw = file.read_bytes()
        try:
            title, text = _extract(raw, suffix)
        except UnicodeDecodeError as exc:
            skipped.append({"doc_id": doc_id, "reason": f"not UTF-8: byte {exc.start}"})
            continue
        except Exception as exc:  # a broken PDF: reported, the others go on
            skipped.append({"doc_id": doc_id, "reason": f"unreadable: {type(exc).__name__}"})
            continue
        if sections and suffix in (".md", ".markdown"):
            for part_id, heading, part in markdown_sections(doc_id, text):
                name = f"{title or file.stem} — {heading}" if heading else (title or file.stem)
                _keep(rows, skipped, part_id, name, part, str(file), max_chars)
            continue
        _keep(rows, skipped, doc_id, title or file.stem, text, str(file), max_chars)
    return rows, skipped


def markdown_sections(doc_id: str, text: str) -> list[tuple[str, str | None, str]]:
    """``(id, heading, text)`` of every ``## `` section (code blocks respected)."""
    parts: list[tuple[str | None, list[str]]] = [(None, [])]
    fenced = False
    for line in text.split("\n"):
        if line.lstrip().startswith("```"):
            fenced = not fenced
        if not fenced and line.startswith("## "):
            parts.append((line[3:].strip(), [line]))
        else:
            parts[-1][1].append(line)
    out, used = [], Counter()
    for heading, lines in parts:
        body = "\n".join(lines).strip()
        if heading is None:
            if body:
                out.append((doc_id, None, body))
            continue
        slug = re.sub(r"[^\w\- ]", "", heading.lower()).strip().replace(" ", "-")
        n = used[slug]
        used[slug] += 1
        out.append((f"{doc_id}#{slug}{f'-{n}' if n else ''}", heading, body))
    return out


def _hidden(path: Path, folder: Path) -> bool:
    return any(part.startswith(".") for part in path.relative_to(folder).parts)


def _read_table(
    path: Path,
    text_column: str | None,
    id_column: str | None,
    title_column: str | None,
    max_chars: int,
) -> tuple[list[dict], list[dict]]:
    from keel.data._ingest import read_table

    if path.suffix.lower() not in TABLE_SUFFIXES:
        raise DataError(
            f"data: {path.name}: a corpus is a folder or a table ({', '.join(TABLE_SUFFIXES)})"
        )
    frame = read_table(path)
    if text_column is None:
        raise DataError(f"data: {path.name} is a table: name its text column (text_column: ...)")
    for key, column in (("text_column", text_column), ("id_column", id_column)):
        if column is not None and column not in frame.columns:
            raise DataError(
                f"{key}: {column!r} is not a column of {path.name}; it has"
                f" {', '.join(map(str, frame.columns[:20]))}"
            )
    if len(frame) > MAX_DOCUMENTS:
        raise DataError(f"data: {path.name}: more than {MAX_DOCUMENTS} documents; split it")
    ids = (
        frame[id_column].astype(str)
        if id_column
        else pd.Series([f"row-{i + 1}" for i in range(len(frame))])
    )
    if id_column and ids.duplicated().any():
        first = ids[ids.duplicated()].iloc[0]
        raise DataError(f"id_column {id_column!r}: id {first!r} is used twice; ids must be unique")
    titles = frame[title_column].astype(str) if title_column in frame.columns else ids
    rows: list[dict] = []
    skipped: list[dict] = []
    for row, (doc_id, title, value) in enumerate(zip(ids, titles, frame[text_column], strict=True)):
        if not isinstance(value, str):
            reason = "empty" if pd.isna(value) else f"not text: {type(value).__name__}"
            skipped.append({"doc_id": doc_id, "reason": f"{reason} (row {row + 1})"})
            continue
        _keep(rows, skipped, doc_id, title, _normalise(value), f"{path.name}:{row + 1}", max_chars)
    return rows, skipped


def _keep(
    rows: list[dict],
    skipped: list[dict],
    doc_id: str,
    title: str,
    text: str,
    source: str,
    max_chars: int,
) -> None:
    if not text.strip():
        skipped.append({"doc_id": doc_id, "reason": "empty: no text"})
    elif len(text) > max_chars:
        skipped.append({"doc_id": doc_id, "reason": f"oversized: {len(text)} characters"})
    else:
        rows.append(
            {"doc_id": doc_id, "title": title.strip()[:200], "text": text, "source": source}
        )


def _drop_duplicates(rows: list[dict]) -> tuple[list[dict], list[dict]]:
    seen: dict[str, str] = {}
    kept, skipped = [], []
    for row in sorted(rows, key=lambda r: r["doc_id"]):
        key = hashlib.sha256(" ".join(row["text"].split()).lower().encode()).hexdigest()
        if key in seen:
            skipped.append({"doc_id": row["doc_id"], "reason": f"duplicate: of {seen[key]}"})
            continue
        seen[key] = row["doc_id"]
        kept.append(row)
    return kept, skipped


def _extract(raw: bytes, suffix: str) -> tuple[str | None, str]:
    """``(title, text)`` of one file's bytes."""
    if suffix == ".pdf":
        from pypdf import PdfReader

        reader = PdfReader(io.BytesIO(raw))
        text = "\n\n".join(page.extract_text() or "" for page in reader.pages)
        title = (reader.metadata or {}).get("/Title") if reader.metadata else None
        return (str(title) if title else None), _normalise(text)
    text = raw.decode("utf-8")  # strict: non-UTF-8 is reported, never guessed
    if suffix in (".html", ".htm"):
        parser = _Text()
        parser.feed(text)
        return parser.title.strip() or None, _normalise("".join(parser.parts))
    title = None
    if suffix in (".md", ".markdown"):
        heading = re.search(r"^#\s+(.+)$", text, re.MULTILINE)
        title = heading.group(1) if heading else None
    return title, _normalise(text)


class _Text(html.parser.HTMLParser):
    """Visible text of an HTML page: no scripts, styles or tags; blocks as paragraphs."""

    BLOCKS = frozenset({"p", "div", "br", "li", "h1", "h2", "h3", "h4", "tr", "section", "pre"})

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.parts: list[str] = []
        self.title = ""
        self._skip = 0
        self._in_title = False

    def handle_starttag(self, tag: str, attrs: Any) -> None:
        if tag in ("script", "style", "noscript"):
            self._skip += 1
        elif tag == "title":
            self._in_title = True
        elif tag in self.BLOCKS:
            self.parts.append("\n\n")

    def handle_endtag(self, tag: str) -> None:
        if tag in ("script", "style", "noscript"):
            self._skip = max(0, self._skip - 1)
        elif tag == "title":
            self._in_title = False

    def handle_data(self, data: str) -> None:
        if self._in_title:
            self.title += data
        elif not self._skip:
            self.parts.append(data)


def _normalise(text: str) -> str:
    text = unicodedata.normalize("NFC", text).replace("\x00", "")
    lines = [_SPACES.sub(" ", line).strip() for line in text.splitlines()]
    return re.sub(r"\n{3,}", "\n\n", "\n".join(lines)).strip()


CORPUS_ENTITIES: tuple[str, ...] = (
    "EMAIL_ADDRESS",
    "PHONE_NUMBER",
    "CREDIT_CARD",
    "IBAN_CODE",
    "US_SSN",
    "PERSON",
    "LOCATION",
)
"""What is redacted from documents by default (PERSON and LOCATION need a spaCy model).

URLs, IP addresses and @handles are left out by default: in documentation they are
hosts, file names and aliases (``models:/adult@champion``), not people; add them with
``retrieval.pii_entities``.
"""


def redact_corpus(
    corpus: Corpus,
    action: str,
    entities: tuple[str, ...] = CORPUS_ENTITIES,
    threshold: float = 0.4,
) -> Corpus:
    """Every document's (and title's) personal data rewritten as ``action`` says.

    ``action`` is ``redact`` (``<EMAIL_ADDRESS>``), ``mask`` or ``hash``, or ``none`` (the
    corpus is still scanned, and the card says PII was kept). Counts only are reported.
    """
    from keel.data._pii import PiiScanner

    scanner = PiiScanner(threshold)
    scanner.entities = tuple(e for e in scanner.entities if e in entities)
    counts: Counter[str] = Counter()
    touched = 0
    texts, titles = [], []
    for title, text in zip(corpus.documents["title"], corpus.documents["text"], strict=True):
        if action == "none":
            found = [r.entity_type for r in scanner.find(text)]
            new_title, new_text = title, text
        else:
            new_text, found = scanner.anonymize(text, action)
            new_title, found_title = scanner.anonymize(title, action)
            found += found_title
        counts.update(found)
        touched += bool(found)
        texts.append(new_text)
        titles.append(new_title)
    documents = corpus.documents.assign(text=texts, title=titles)
    report = {
        "engine": scanner.engine,
        "action": action,
        "entities_scanned": list(scanner.entities),
        "documents_with_pii": touched,
        "entities": dict(counts.most_common()),
    }
    return Corpus(documents, corpus.source, corpus.skipped, report)


def corpus_table(corpus: Corpus) -> Any:
    """The corpus as a :class:`~keel.data.Dataset` (what ``snapshot`` stores)."""
    from keel.data._ingest import Dataset

    return Dataset(corpus.documents, corpus.source, corpus.digest)


def chunk_corpus(documents: pd.DataFrame, size: int, overlap: int) -> pd.DataFrame:
    """Chunks of whole sentences, at most ``size`` words, sharing about ``overlap``.

    A sentence longer than ``size`` words is cut at ``size`` words; a chunk's text holds
    one sentence per line (answers quote whole sentences). Returns
    ``chunk_id, doc_id, title, position, text`` in document order.
    """
    if size < 8 or not 0 <= overlap < size:
        raise DataError(
            f"chunking: size must be at least 8 words and overlap in [0, size), got {size},"
            f" {overlap}"
        )
    out = []
    for doc_id, title, text in zip(
        documents["doc_id"], documents["title"], documents["text"], strict=True
    ):
        for n, chunk in enumerate(_chunks(split_sentences(text), size, overlap)):
            out.append((f"{doc_id}#{n}", doc_id, title, n, chunk))
    return pd.DataFrame(out, columns=["chunk_id", "doc_id", "title", "position", "text"])


def _chunks(sentences: list[str], size: int, overlap: int) -> list[str]:
    pieces: list[list[str]] = []
    for sentence in sentences:
        words = sentence.split()
        for start in range(0, len(words), size):
            pieces.append(words[start : start + size])
    chunks: list[str] = []
    current: list[list[str]] = []
    count = 0
    for piece in pieces:
        if current and count + len(piece) > size:
            chunks.append("\n".join(" ".join(p) for p in current))  # a sentence per line
            carried: list[list[str]] = []
            kept = 0
            room = min(overlap, size - len(piece))  # never more than `size` in all
            for previous in reversed(current):  # whole sentences, up to `overlap` words
                if kept + len(previous) > room:
                    break
                carried.insert(0, previous)
                kept += len(previous)
            current, count = carried, kept
        current.append(piece)
        count += len(piece)
    if current:
        chunks.append("\n".join(" ".join(p) for p in current))
    return chunks
