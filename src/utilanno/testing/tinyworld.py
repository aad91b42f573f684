"""A deterministic synthetic world in the official raw formats, for tests and the tiny config.

Passages belong to topics (a topic vocabulary) and carry a few key words of their own plus one fact
("the <relation> of <key1> <key2> is <answer>"). A query asks for that fact, so it shares its key words with
exactly one passage: lexical signal a trained retriever can learn, while hard negatives from the same topic
share only topic words. Every file is written byte-for-byte reproducibly (fixed archive times).

Files (relative to the output folder), named as the official downloads:
  msmarco/collectionandqueries.tar.gz  collection.tsv, queries.dev.small.tsv, qrels.dev.small.tsv
  msmarco/queries.tar.gz               queries.train.tsv, queries.dev.tsv, queries.eval.tsv
  msmarco/marco.tar.gz                 marco/para.txt, marco/para.title.txt (RocketQA's titled passages:
                                       "-" for some titles, some pids without a title line)
  msmarco/qrels.train.tsv              qid<TAB>0<TAB>pid<TAB>1
  msmarco/train-tevatron.jsonl         query_id, query, positive_passages, negative_passages
  msmarco/{train,dev}_v2.1.json.gz     MS MARCO QnA v2.1 layout (column-oriented JSON)
  trec/msmarco-test20{19,20}-queries.tsv.gz, trec/20{19,20}qrels-pass.txt (graded 0-3, space-separated)
  beir/<name>.zip <name>/corpus.jsonl, queries.jsonl, qrels/test.tsv (cqadupstack: forums)
  nq/NQ-open.dev.jsonl                 {"question", "answer": [...]}
  hotpotqa/hotpot_dev_distractor_v1.json
  own/own-corpus.zip                   a researcher's own corpus (issue 16): corpus.jsonl, queries.jsonl
                                       (training queries, no labels), test/queries.jsonl, test/qrels.tsv,
                                       test/answers.jsonl ({"question", "answer": [...]}): for evaluation only
"""

from __future__ import annotations

import gzip
import io
import json
import random
import tarfile
import zipfile
from dataclasses import dataclass
from pathlib import Path

from utilanno.atomic import atomic_path

SYLLABLES = [c + v for c in "bdfgklmnprstvz" for v in "aeiou"] + ["qu" + v for v in "aei"]
RELATIONS = [
    "capital",
    "color",
    "inventor",
    "height",
    "origin",
    "founder",
    "symbol",
    "season",
    "river",
    "author",
]
FILLER = (
    "the a of and in is was for on with as by from that this which are it its an be at or has have "
    "about also known many most often some such used very well when where while after before during"
).split()
CQA_FORUMS = ["android", "gis", "stats"]
ARCHIVE_TIME = 946684800  # 2000-01-01: fixed so archives are reproducible
ZIP_TIME = (2000, 1, 1, 0, 0, 0)


def files(beir: list[str]) -> list[str]:
    """Relative paths the generator writes, for a workflow rule's outputs."""
    out = [
        "msmarco/collectionandqueries.tar.gz",
        "msmarco/queries.tar.gz",
        "msmarco/marco.tar.gz",
        "msmarco/qrels.train.tsv",
        "msmarco/train-tevatron.jsonl",
        "msmarco/train_v2.1.json.gz",
        "msmarco/dev_v2.1.json.gz",
        "trec/msmarco-test2019-queries.tsv.gz",
        "trec/2019qrels-pass.txt",
        "trec/msmarco-test2020-queries.tsv.gz",
        "trec/2020qrels-pass.txt",
    ]
    out += [f"beir/{name}.zip" for name in beir]
    if "nq" in beir:
        out.append("nq/NQ-open.dev.jsonl")
    if "hotpotqa" in beir:
        out.append("hotpotqa/hotpot_dev_distractor_v1.json")
    return out + ["own/own-corpus.zip"]


@dataclass
class Passage:
    pid: str
    topic: int
    keys: list[str]
    relation: str
    answer: str
    text: str
    title: str


class World:
    """The latent world: vocabularies and passages, from which every dataset is drawn."""

    def __init__(self, seed: int, topics: int, passages: int):
        self.rng = random.Random(seed)
        words = self._words(topics * 30 + passages * 4 + 400)
        self.common = words[:150]
        pos = 150
        self.topic_words = []
        for _ in range(topics):
            self.topic_words.append(words[pos : pos + 30])
            pos += 30
        self.spare = words[pos:]
        self.passages: list[Passage] = []
        for i in range(passages):
            self.passages.append(self._passage(i, i % topics))

    def _words(self, n: int) -> list[str]:
        seen, out = set(), []
        while len(out) < n:
            w = "".join(self.rng.choice(SYLLABLES) for _ in range(self.rng.randint(2, 3)))
            if w not in seen:
                seen.add(w)
                out.append(w)
        return out

    def _passage(self, i: int, topic: int) -> Passage:
        rng = self.rng
        keys = [self.spare.pop() for _ in range(2)]
        relation = rng.choice(RELATIONS)
        answer = self.spare.pop()
        body = [
            rng.choice(self.topic_words[topic]) if rng.random() < 0.45 else rng.choice(FILLER + self.common)
            for _ in range(rng.randint(8, 18))
        ]
        fact = f"the {relation} of {keys[0]} {keys[1]} is {answer}"
        cut = rng.randint(0, len(body))
        text = (
            " ".join(body[:cut])
            + (" " if cut else "")
            + fact
            + ". "
            + " ".join(body[cut:])
            + " "
            + " ".join(keys)
            + "."
        )
        title = " ".join(rng.sample(self.topic_words[topic], 2))
        return Passage(str(7000000 + i * 3), topic, keys, relation, answer, text.strip(), title)

    def question(self, p: Passage, style: int) -> str:
        forms = [
            f"what is the {p.relation} of {p.keys[0]} {p.keys[1]}",
            f"{p.keys[0]} {p.keys[1]} {p.relation}",
            f"which {p.relation} does {p.keys[1]} {p.keys[0]} have",
        ]
        return forms[style % len(forms)]

    def same_topic(self, p: Passage, n: int) -> list[Passage]:
        pool = [q for q in self.passages if q.topic == p.topic and q.pid != p.pid]
        other = [q for q in self.passages if q.topic != p.topic]
        picked = self.rng.sample(pool, min(n, len(pool)))
        return picked + self.rng.sample(other, n - len(picked))


def generate(
    out: str | Path,
    seed: int = 0,
    topics: int = 24,
    passages: int = 1200,
    train_queries: int = 64,
    dev_queries: int = 40,
    dl_queries: int = 8,
    negatives: int = 30,
    beir: list[str] | tuple[str, ...] = ("scifact", "nq", "hotpotqa", "cqadupstack"),
) -> list[Path]:
    """Write the tiny world under `out`; returns the files written (see `files`)."""
    out = Path(out)
    w = World(seed, topics, passages)
    rng = w.rng
    order = list(range(passages))
    rng.shuffle(order)
    need = train_queries + dev_queries + 2 * dl_queries
    if need > passages:
        raise ValueError(f"{need} queries need at least as many passages, have {passages}")
    targets = [w.passages[i] for i in order[:need]]
    train, dev = targets[:train_queries], targets[train_queries : train_queries + dev_queries]
    dl = {2019: targets[-2 * dl_queries : -dl_queries], 2020: targets[-dl_queries:]}
    written: list[Path] = []

    def put(rel: str, data: bytes):
        path = out / rel
        with atomic_path(path) as tmp:
            tmp.write_bytes(data)
        written.append(path)

    # MS MARCO passage
    collection = "".join(f"{p.pid}\t{p.text}\n" for p in w.passages)
    train_q = [(str(100000 + i), w.question(p, i), p) for i, p in enumerate(train)]
    dev_q = [(str(500000 + i), w.question(p, i), p) for i, p in enumerate(dev)]
    dev_extra = [
        (str(600000 + i), w.question(w.passages[order[-1 - i]], i + 1), None) for i in range(dev_queries // 2)
    ]
    tsv = lambda rows: "".join(f"{qid}\t{text}\n" for qid, text, *_ in rows)  # noqa: E731
    qrels = lambda rows: "".join(f"{qid}\t0\t{p.pid}\t1\n" for qid, _, p in rows)  # noqa: E731
    put(
        "msmarco/collectionandqueries.tar.gz",
        _tar(
            {
                "collection.tsv": collection,
                "queries.dev.small.tsv": tsv(dev_q),
                "qrels.dev.small.tsv": qrels(dev_q),
                "queries.eval.small.tsv": tsv(dev_extra),
            }
        ),
    )
    put(
        "msmarco/queries.tar.gz",
        _tar(
            {
                "queries.train.tsv": tsv(train_q),
                "queries.dev.tsv": tsv(dev_q + dev_extra),
                "queries.eval.tsv": tsv(dev_extra),
            }
        ),
    )
    titles = "".join(
        f"{p.pid}\t{'-' if i % 7 == 3 else p.title}\n" for i, p in enumerate(w.passages) if i % 11 != 5
    )
    put("msmarco/marco.tar.gz", _tar({"marco/para.txt": collection, "marco/para.title.txt": titles}))
    put("msmarco/qrels.train.tsv", qrels(train_q).encode())
    lines = []
    for qid, text, p in train_q:
        negs = w.same_topic(p, negatives)
        enc = lambda q: {"docid": q.pid, "title": q.title, "text": q.text}  # noqa: E731
        lines.append(
            json.dumps(
                {
                    "query_id": qid,
                    "query": text,
                    "positive_passages": [enc(p)],
                    "negative_passages": [enc(q) for q in negs],
                }
            )
        )
    put("msmarco/train-tevatron.jsonl", ("\n".join(lines) + "\n").encode())
    put("msmarco/train_v2.1.json.gz", _qna(train_q))
    put("msmarco/dev_v2.1.json.gz", _qna(dev_q + dev_extra))

    # TREC DL: more queries than judged (as the official 200 vs 43/54); graded judgments 0-3.
    for year, judged in dl.items():
        base = 1000000 + year * 100
        qs = [(str(base + i), w.question(p, i + 1), p) for i, p in enumerate(judged)]
        unjudged = [
            (str(base + 50 + i), w.question(w.passages[order[-20 - i]], i), None) for i in range(dl_queries)
        ]
        put(f"trec/msmarco-test{year}-queries.tsv.gz", _gz(tsv(qs + unjudged).encode()))
        rows = []
        for qid, _, p in qs:
            rows.append(f"{qid} Q0 {p.pid} 3")
            for k, q in enumerate(w.same_topic(p, 6)):
                rows.append(f"{qid} Q0 {q.pid} {(2, 1, 0, 0, 1, 0)[k]}")
        put(f"trec/{year}qrels-pass.txt", ("\n".join(rows) + "\n").encode())

    # BEIR: small corpora of their own (ids as strings, titles), all splits' queries in queries.jsonl.
    for name in beir:
        folders = [f"cqadupstack/{f}" for f in CQA_FORUMS] if name == "cqadupstack" else [name]
        members = {}
        for folder in folders:
            sub = World(seed * 1000 + hash_name(folder), max(4, topics // 4), 160)
            corpus = "".join(
                json.dumps(
                    {
                        "_id": f"{folder.split('/')[-1][:3]}{i}",
                        "title": p.title,
                        "text": p.text,
                        "metadata": {},
                    }
                )
                + "\n"
                for i, p in enumerate(sub.passages)
            )
            picks = list(range(len(sub.passages)))
            sub.rng.shuffle(picks)
            queries, test, train_rows = [], [], []
            for j, i in enumerate(picks[:36]):
                p = sub.passages[i]
                qid = _beir_qid(name, j, sub.rng)
                meta = {"answer": p.answer} if name == "hotpotqa" else {}
                queries.append({"_id": qid, "text": sub.question(p, j), "metadata": meta, "_p": p, "_i": i})
                rows = train_rows if j >= 24 else test
                rows.append(f"{qid}\t{folder.split('/')[-1][:3]}{i}\t1")
                if (
                    j % 3 == 0 and j < 24
                ):  # a second judged passage (also graded 0 rows, as in some BEIR sets)
                    other = sub.same_topic(p, 1)[0]
                    rows.append(f"{qid}\t{folder.split('/')[-1][:3]}{sub.passages.index(other)}\t0")
            members[f"{folder}/corpus.jsonl"] = corpus
            members[f"{folder}/queries.jsonl"] = "".join(
                json.dumps({k2: v for k2, v in q.items() if k2 not in ("_p", "_i")}) + "\n" for q in queries
            )
            members[f"{folder}/qrels/test.tsv"] = "query-id\tcorpus-id\tscore\n" + "\n".join(test) + "\n"
            if name != "cqadupstack":
                members[f"{folder}/qrels/train.tsv"] = (
                    "query-id\tcorpus-id\tscore\n" + "\n".join(train_rows) + "\n"
                )
            if name == "nq":
                # NQ-open: lower case, no '?'; covers two thirds of the BEIR-NQ test queries, plus others.
                nq = [
                    {"question": q["text"], "answer": [q["_p"].answer]}
                    for j, q in enumerate(queries[:24])
                    if j % 3 != 2
                ]
                nq += [
                    {"question": f"who wrote {sub.spare[-1 - j]}", "answer": [sub.spare[-10 - j]]}
                    for j in range(5)
                ]
                put("nq/NQ-open.dev.jsonl", "".join(json.dumps(x) + "\n" for x in nq).encode())
            if name == "hotpotqa":
                hp = [
                    {
                        "_id": q["_id"],
                        "question": q["text"],
                        "answer": q["_p"].answer,
                        "supporting_facts": [[q["_p"].title, 0]],
                        "context": [[q["_p"].title, [q["_p"].text]]],
                        "type": "bridge",
                        "level": "easy",
                    }
                    for q in queries[:24]
                ]
                put("hotpotqa/hotpot_dev_distractor_v1.json", json.dumps(hp).encode())
        put(f"beir/{name}.zip", _zip(members))
    put("own/own-corpus.zip", _own_corpus(seed, topics))
    return written


def _own_corpus(seed: int, topics: int, train: int = 24, test: int = 12) -> bytes:
    """A corpus with unlabelled training queries (no qrels: candidates must be mined, labels come from the
    LLM) and test queries with qrels and answers, in BEIR's JSONL layout."""
    w = World(seed * 1000 + hash_name("own"), max(4, topics // 4), 160)
    corpus = "".join(
        json.dumps({"_id": f"doc{i}", "title": p.title, "text": p.text}) + "\n"
        for i, p in enumerate(w.passages)
    )
    picks = list(range(len(w.passages)))
    w.rng.shuffle(picks)
    queries = [(f"q{j}", w.question(w.passages[i], j), i) for j, i in enumerate(picks[: train + test])]
    jsonl = lambda rows: "".join(json.dumps({"_id": q, "text": t}) + "\n" for q, t, _ in rows)  # noqa: E731
    return _zip(
        {
            "corpus.jsonl": corpus,
            "queries.jsonl": jsonl(queries[:train]),
            "test/queries.jsonl": jsonl(queries[train:]),
            "test/qrels.tsv": "query-id\tcorpus-id\tscore\n"
            + "".join(f"{q}\tdoc{i}\t1\n" for q, _, i in queries[train:]),
            "test/answers.jsonl": "".join(
                json.dumps({"question": t, "answer": [w.passages[i].answer]}) + "\n"
                for _, t, i in queries[train:]
            ),
        }
    )


def hash_name(name: str) -> int:
    """A stable small integer from a name (Python's hash() is salted per process)."""
    return sum((i + 1) * ord(c) for i, c in enumerate(name)) % 9973


def _beir_qid(name: str, j: int, rng: random.Random) -> str:
    if name == "hotpotqa":
        return "5a" + "".join(rng.choice("0123456789abcdef") for _ in range(22))
    if name == "nq":
        return f"test{j}"
    return str(j + 1)


def _tar(members: dict[str, str]) -> bytes:
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w", format=tarfile.USTAR_FORMAT) as tf:
        for name, text in members.items():
            data = text.encode()
            info = tarfile.TarInfo(name)
            info.size, info.mtime, info.mode = len(data), ARCHIVE_TIME, 0o644
            tf.addfile(info, io.BytesIO(data))
    return _gz(raw.getvalue())


def _gz(data: bytes) -> bytes:
    buf = io.BytesIO()
    with gzip.GzipFile(fileobj=buf, mode="wb", mtime=ARCHIVE_TIME) as gz:
        gz.write(data)
    return buf.getvalue()


def _zip(members: dict[str, str]) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        for name, text in members.items():
            info = zipfile.ZipInfo(name, date_time=ZIP_TIME)
            info.compress_type = zipfile.ZIP_DEFLATED
            zf.writestr(info, text)
    return buf.getvalue()


def _qna(rows: list) -> bytes:
    """MS MARCO QnA v2.1 (column-oriented JSON); every 7th query has no answer, as in the real files."""
    qna: dict[str, dict] = {
        k: {} for k in ("answers", "passages", "query", "query_id", "query_type", "wellFormedAnswers")
    }
    for row, (qid, text, p) in enumerate(rows):
        has = p is not None and row % 7 != 3
        qna["answers"][str(row)] = (
            [f"The {p.relation} of {p.keys[0]} {p.keys[1]} is {p.answer}."] if has else ["No Answer Present."]
        )
        qna["passages"][str(row)] = [
            {"is_selected": 1, "passage_text": p.text if p else "", "url": "http://example.org/"}
        ]
        qna["query"][str(row)] = text
        qna["query_id"][str(row)] = int(qid)
        qna["query_type"][str(row)] = "DESCRIPTION"
        qna["wellFormedAnswers"][str(row)] = "[]"
    return _gz(json.dumps(qna).encode())
